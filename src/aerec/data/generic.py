"""Generic delimited rating files, and the checked columnar reading every delimited reader shares.

:func:`read_generic` reads ``user,item,rating[,timestamp]`` files (CSV, TSV, ``;`` or
whitespace separated, with or without a header line).

:func:`read_checked` is the engine behind it and behind the MovieLens readers: pyarrow parses the
file into typed columns on all cores (the fast path); only when that fails, or a value is out of
range, is the file parsed again as raw bytes, single-threaded, so that NumPy can find *every* bad
row and its 1-based physical line number without a Python loop over the rows (the diagnostic
path). Bad rows either raise :class:`~aerec.data.errors.DataFormatError` for the first one, or,
with ``skip_bad_lines=True``, are dropped and counted.

A line whose fields are all empty (a blank line) is ignored everywhere, not counted as bad.
"""

from __future__ import annotations

import codecs
import mmap
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from aerec.data import inputs
from aerec.data.errors import DataFormatError
from aerec.data.ratings import (
    MAX_DAY,
    MAX_LEVELS,
    MAX_RATING_MAGNITUDE,
    MIN_DAY,
    Ratings,
    RatingScale,
    calendar_days,
    days_from_epoch_seconds,
)

__all__ = [
    "CheckedTable",
    "FieldSpec",
    "ScaleRule",
    "TableLayout",
    "first_lines",
    "no_ratings_reason",
    "read_checked",
    "read_generic",
    "read_head",
]

#: How one field is parsed and checked: ``id`` / ``int`` non-negative integers, ``rating`` a finite
#: number on the rating scale, ``seconds`` unix seconds, ``time`` unix seconds or ``YYYY-MM-DD``,
#: ``empty`` must be empty (the gaps of ``::``-separated files), ``text`` anything.
FieldKind = Literal["id", "int", "rating", "seconds", "time", "empty", "text"]

#: Given the finite ratings of the parseable rows (float64), the scale to validate them against.
ScaleRule = Callable[[np.ndarray], RatingScale]

#: Up to 18 decimal digits (always an int64); ``-0`` is zero, as pyarrow's fast path reads it.
_ID_RE = r"^\s*(\d{1,18}|-0{1,18})\s*$"
_MAX_ID = 10**18 - 1
_SECONDS_RE = r"^\s*-?\d{1,15}\s*$"
_NUMBER_RE = r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,3})?\s*$"
_DATE_RE = r"^\s*\d{4}-\d{2}-\d{2}\s*$"
_HEAD_BYTES = 64 * 1024
_SHOWN_CHARS = 80
#: Most ratings dropped one by one (``skip_bad_lines``) to make an inferred scale storable.
_MAX_SCALE_REFITS = 100


@dataclass(frozen=True)
class FieldSpec:
    """One column of a delimited file: its ``name`` (key in the result), ``kind`` and the
    ``label`` used in error messages (``"user id"``)."""

    name: str
    kind: FieldKind
    label: str = ""

    @property
    def what(self) -> str:
        return self.label or self.name


@dataclass(frozen=True)
class TableLayout:
    """The shape of a delimited file: fields in order, single-character ``delimiter``, how many
    header lines to skip, whether ``"`` quotes fields, and ``description`` — what a good line looks
    like, for the wrong-field-count message."""

    fields: tuple[FieldSpec, ...]
    delimiter: str
    description: str
    header_lines: int = 0
    quoted: bool = False


@dataclass
class CheckedTable:
    """The good rows of a file, column by column.

    ``columns[name]`` has shape ``(n_rows,)``: int64 for ``id``/``int`` fields, float64 for the
    ``rating``, int32 days since 1970-01-01 for ``seconds``/``time`` fields, a pyarrow string array
    for ``text`` fields (``empty`` fields are dropped). ``scale`` is the scale the ratings were
    checked against (``None`` without a rating field); ``skipped_lines`` counts dropped bad lines.
    """

    columns: dict[str, np.ndarray | pa.Array]
    n_rows: int
    scale: RatingScale | None = None
    skipped_lines: int = 0


def read_head(path: str | Path, n_bytes: int = _HEAD_BYTES) -> bytes:
    """The first ``n_bytes`` of a file's content, decompressed when it is gzip (raises
    :class:`DataFormatError` when it cannot be read, ``FileNotFoundError`` when absent)."""
    return inputs.read_head(path, n_bytes)


def first_lines(path: str | Path, n: int = 5, n_bytes: int = _HEAD_BYTES) -> list[tuple[int, str]]:
    """Up to ``n`` complete non-blank lines from the first ``n_bytes`` of a file, as
    ``(1-based line number, text)`` with BOM and ``\\r`` removed, decoded as latin-1 so any byte
    decodes. Reads only the head of the file (decompressed when gzip), for sniffing; binary data
    is a :class:`DataFormatError`."""
    head = read_head(path, n_bytes)
    inputs.refuse_binary(path, head)
    parts = head.removeprefix(b"\xef\xbb\xbf").decode("latin-1").split("\n")
    if len(head) == n_bytes:
        parts = parts[:-1]  # the last piece may be cut mid-line
    found: list[tuple[int, str]] = []
    for number, part in enumerate(parts, start=1):  # the head's first lines only
        if part.strip():
            found.append((number, part.rstrip("\r")))
            if len(found) == n:
                break
    return found


def _describe_scale(scale: RatingScale) -> str:
    def num(x: float) -> str:
        return f"{x:g}"

    return f"{num(scale.minimum)}–{num(scale.maximum)} in steps of {num(scale.step)}"


def _shown(text: str | bytes) -> str:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            text = text.decode("latin-1")
    return text if len(text) <= _SHOWN_CHARS else text[:_SHOWN_CHARS] + "…"


def _source(path: Path, data: bytes | None) -> str | pa.BufferReader:
    return pa.BufferReader(data) if data is not None else str(path)


def _parse_options(layout: TableLayout, **kwargs) -> pacsv.ParseOptions:
    return pacsv.ParseOptions(
        delimiter=layout.delimiter,
        quote_char='"' if layout.quoted else False,
        newlines_in_values=False,
        **kwargs,
    )


# ----------------------------------------------------------------------------- fast path


_FAST_TYPES = {
    "id": pa.int64(),
    "int": pa.int64(),
    "rating": pa.float64(),
    "seconds": pa.int64(),
    "empty": pa.null(),
    "text": pa.string(),
}


_MIN_SECONDS = MIN_DAY * 86400  # 0001-01-01 00:00:00
_MAX_SECONDS = (MAX_DAY + 1) * 86400 - 1  # 9999-12-31 23:59:59


def _seconds_to_days(seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unix seconds (int64) → (days as int64, mask of seconds within the years 0001–9999)."""
    return seconds // 86400, (seconds >= _MIN_SECONDS) & (seconds <= _MAX_SECONDS)


def _fit_scale(scale_rule: ScaleRule, ratings: np.ndarray, path: Path) -> RatingScale:
    try:
        return scale_rule(ratings)
    except ValueError as exc:  # e.g. no scale of sane steps fits these numbers
        raise DataFormatError(
            path, f"cannot fit a rating scale to the ratings ({exc}); pass --scale MIN:MAX[:STEP]"
        ) from None


def _unstorable_rows(ratings: np.ndarray, scale: RatingScale) -> tuple[np.ndarray, np.ndarray]:
    """For finite ratings in file order: (rows whose value float32 cannot hold to within a
    quarter of ``scale``'s step, rows from which the ratings so far span more than
    :data:`MAX_LEVELS` steps)."""
    imprecise = ~(np.abs(ratings.astype(np.float32).astype(np.float64) - ratings) < scale.step / 4)
    span = np.maximum.accumulate(ratings) - np.minimum.accumulate(ratings)
    wide = np.rint(span / scale.step) + 1 > MAX_LEVELS
    return imprecise, wide


def _has_hex_marker(path: Path, data: bytes | None, header_lines: int) -> bool:
    """True when an ``x``/``X`` byte follows the header lines: pyarrow reads ``0x1F`` as the
    integer 31, which the decimal grammar refuses, so such files take the diagnostic path.
    A memchr-speed scan of the memory-mapped file, no parsing."""

    def scan(buf) -> bool:
        start = 0
        for _ in range(header_lines):
            start = buf.find(b"\n", start) + 1
            if start == 0:
                return False
        return buf.find(b"x", start) >= 0 or buf.find(b"X", start) >= 0

    if data is not None:
        return scan(data)
    with open(path, "rb") as f:
        if os.fstat(f.fileno()).st_size == 0:
            return False
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            return scan(mapped)


def _fast_read(path: Path, layout: TableLayout, data: bytes | None) -> dict | None:
    """Typed multi-threaded read; None when anything is off (the diagnostic path then decides).

    Integer fields are parsed by pyarrow, which also takes hexadecimal (``0x1F``): files with
    text fields (small title files) read them as strings checked against the decimal grammar,
    others (big rating files) take the diagnostic path when an ``x`` appears at all."""
    names = [f.name for f in layout.fields]
    has_text = any(f.kind == "text" for f in layout.fields)
    if not has_text and _has_hex_marker(path, data, layout.header_lines):
        return None
    types = {f.name: _FAST_TYPES[f.kind] for f in layout.fields if f.kind != "time"}
    if has_text:
        types.update({f.name: pa.string() for f in layout.fields if f.kind in ("id", "int")})
    try:
        table = pacsv.read_csv(
            _source(path, data),
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=layout.header_lines, use_threads=True
            ),
            parse_options=_parse_options(layout, ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(
                column_types=types,
                null_values=[""],
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    columns: dict[str, np.ndarray | pa.Array] = {}
    for spec in layout.fields:
        col = table.column(spec.name)
        if spec.kind == "text":
            columns[spec.name] = col.combine_chunks()
            continue
        if spec.kind == "empty":
            continue
        if col.null_count:
            return None
        if spec.kind in ("id", "int"):
            if has_text:
                text = pc.ascii_trim_whitespace(col)
                if len(text) and not pc.all(pc.match_substring_regex(text, r"^\d{1,18}$")).as_py():
                    return None
                col = text.cast(pa.int64())
            values = col.to_numpy()
            if values.size and (values.min() < 0 or values.max() > _MAX_ID):
                return None
            columns[spec.name] = values
        elif spec.kind == "rating":
            values = col.to_numpy().astype(np.float64, copy=False)
            with np.errstate(invalid="ignore"):
                if not np.all(np.abs(values) <= MAX_RATING_MAGNITUDE):  # also NaN
                    return None
            columns[spec.name] = values
        else:  # seconds or time
            if spec.kind == "time" and pa.types.is_date32(col.type):
                days = col.cast(pa.int32()).to_numpy().astype(np.int64)
            elif pa.types.is_int64(col.type):
                seconds = col.to_numpy()
                if seconds.size and (seconds.min() < _MIN_SECONDS or seconds.max() > _MAX_SECONDS):
                    return None
                columns[spec.name] = days_from_epoch_seconds(seconds)
                continue
            elif pa.types.is_null(col.type) and len(col) == 0:
                days = np.zeros(0, np.int64)
            else:
                return None
            if days.size and (days.min() < MIN_DAY or days.max() > MAX_DAY):
                return None
            columns[spec.name] = days.astype(np.int32)
    columns["__rows__"] = table.num_rows
    return columns


# ----------------------------------------------------------------------------- diagnostic path


def _lines_of_rows(rows: np.ndarray, gaps: np.ndarray, first_line: int) -> np.ndarray:
    """Physical line of each table row, given the sorted physical lines that produced no row.

    Row ``r`` sits on the least line ``L`` with ``L = first_line + r + #(gaps <= L)``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    lines = first_line + rows
    while True:
        moved = first_line + rows + np.searchsorted(gaps, lines, side="right")
        if np.array_equal(moved, lines):
            return lines
        lines = moved


def _np(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False))


def _as_trimmed_text(raw: pa.Array, ok: np.ndarray, filler: bytes) -> pa.Array:
    """Bytes that passed a pure-ASCII regex (others replaced by ``filler``) → trimmed strings."""
    kept = pc.if_else(pa.array(ok), raw, pa.scalar(filler, pa.binary()))
    return pc.ascii_trim_whitespace(kept.cast(pa.string()))


@dataclass
class _Diagnosis:
    columns: dict[str, np.ndarray | pa.Array]
    good: np.ndarray  # (n_table_rows,) rows that parsed and passed every check
    first_error: tuple[int | None, str] | None
    n_bad: int
    scale: RatingScale | None


def _valid_utf8(path: Path, data: bytes | None) -> bytes | None:
    """``data`` (or the file's bytes), re-encoded from latin-1 when it is not valid UTF-8:
    pyarrow decodes a malformed line's text as UTF-8 before handing it over, and fails on
    anything else. Checked in 16 MiB pieces; the file is loaded only when it needs re-encoding."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        if data is not None:
            view = memoryview(data)
            for start in range(0, len(view), 1 << 24):
                decoder.decode(view[start : start + (1 << 24)])
        else:
            with open(inputs.check_regular_file(path), "rb") as f:
                for piece in iter(lambda: f.read(1 << 24), b""):
                    decoder.decode(piece)
        decoder.decode(b"", final=True)
        return data
    except UnicodeDecodeError:
        raw = data if data is not None else inputs.read_bytes(path)
        return raw.decode("latin-1").encode("utf-8")


def _storable_scale(
    path: Path, ratings: np.ndarray, parsed: np.ndarray, scale_rule: ScaleRule, skip_bad: bool
) -> tuple[RatingScale, np.ndarray, dict[int, str]]:
    """The scale for the parsed ratings, made storable: (scale, rows whose rating cannot be
    stored with the others, why for each such row).

    A fixed scale that is storable flags nothing. An inferred one that is not (``4, 5,
    100000``: 99,997 levels) flags the first row from which the ratings above span too many
    levels, or whose value float32 cannot hold at that step; with ``skip_bad`` such rows are
    dropped one by one and the scale inferred again (at most :data:`_MAX_SCALE_REFITS` times).
    """
    unstorable = np.zeros(len(ratings), dtype=bool)
    why: dict[int, str] = {}
    for _ in range(_MAX_SCALE_REFITS + 1):
        rows = np.flatnonzero(parsed & ~unstorable)
        scale = _fit_scale(scale_rule, ratings[rows], path)
        problem = scale.storage_problem()
        if problem is None or (why and not skip_bad):
            return scale, unstorable, why
        if len(why) >= _MAX_SCALE_REFITS:
            raise DataFormatError(
                path,
                f"more than {_MAX_SCALE_REFITS} ratings do not fit one storable scale; "
                "pass --scale MIN:MAX[:STEP]",
            )
        imprecise, wide = _unstorable_rows(ratings[rows], scale)
        hits = np.flatnonzero(imprecise | wide)
        if not hits.size:  # only levels between or beside the ratings are the problem
            raise DataFormatError(
                path,
                f"the ratings need the scale {_describe_scale(scale)}, which cannot be stored: "
                f"{problem}; pass --scale MIN:MAX[:STEP]",
            )
        k = int(hits[0])
        row = int(rows[k])
        unstorable[row] = True
        if imprecise[k]:
            why[row] = f"exactly in steps of {scale.step:g}; pass --scale MIN:MAX[:STEP]"
        else:
            seen = ratings[rows[: k + 1]]
            lo, hi = float(seen.min()), float(seen.max())
            levels = round((hi - lo) / scale.step) + 1
            why[row] = (
                f"with the ratings above it: together they span {lo:g}–{hi:g} in steps of "
                f"{scale.step:g}, {levels:,} levels, more than the {MAX_LEVELS:,} a prepared "
                "dataset holds; pass --scale MIN:MAX[:STEP]"
            )
    raise AssertionError("unreachable")  # pragma: no cover


def _diagnose(
    path: Path,
    layout: TableLayout,
    data: bytes | None,
    scale_rule: ScaleRule | None,
    skip_bad: bool = False,
) -> _Diagnosis:
    """Read every field as raw bytes and check all rows with vectorised operations."""
    wrong_shape: list[tuple[int | None, str]] = []

    def on_invalid_row(row: pacsv.InvalidRow) -> str:
        # Called once per line with the wrong field count; bad lines are rare.
        if len(wrong_shape) < 1:
            wrong_shape.append((row.number, row.text))
        else:
            wrong_shape.append((row.number, ""))
        return "skip"

    names = [f.name for f in layout.fields]
    data = _valid_utf8(path, data)
    try:
        table = pacsv.read_csv(
            _source(path, data),
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=layout.header_lines, use_threads=False
            ),
            parse_options=_parse_options(
                layout, ignore_empty_lines=False, invalid_row_handler=on_invalid_row
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={
                    f.name: pa.string() if f.kind == "text" else pa.binary() for f in layout.fields
                },
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise DataFormatError(path, f"cannot parse as {layout.description}: {e}") from None
    n = table.num_rows
    raw = {name: table.column(name).combine_chunks() for name in names}
    lengths = {name: _np(pc.binary_length(raw[name].cast(pa.binary()))) for name in names}
    blank = np.ones(n, dtype=bool)
    for name in names:
        blank &= lengths[name] == 0

    # (bad mask, reason for a row) per check, in the order a line is read.
    checks: list[tuple[np.ndarray, Callable[[int], str]]] = []
    columns: dict[str, np.ndarray | pa.Array] = {}

    def value(name: str, row: int) -> str:
        return _shown(raw[name][row].as_py())

    def add_check(bad: np.ndarray, reason: Callable[[int], str]) -> None:
        checks.append((bad & ~blank, reason))

    rating_name = None
    for spec in layout.fields:
        col = raw[spec.name]
        if spec.kind == "text":
            columns[spec.name] = col
        elif spec.kind == "empty":
            add_check(
                lengths[spec.name] != 0,
                lambda row: (
                    f"expected {layout.description}, got {_row_text(raw, names, layout, row)!r}"
                ),
            )
        elif spec.kind in ("id", "int"):
            ok = _np(pc.match_substring_regex(col, _ID_RE))
            noun = "integer id" if spec.kind == "id" else "integer"
            add_check(
                ~ok,
                lambda row, s=spec, noun=noun: (
                    f"{s.what} {value(s.name, row)!r} is not a non-negative {noun}"
                ),
            )
            columns[spec.name] = _np(_as_trimmed_text(col, ok, b"0").cast(pa.int64()))
        elif spec.kind == "rating":
            ok = _np(pc.match_substring_regex(col, _NUMBER_RE))
            add_check(
                ~ok,
                lambda row, s=spec: f"{s.what} {value(s.name, row)!r} is not a finite number",
            )
            columns[spec.name] = _np(_as_trimmed_text(col, ok, b"0").cast(pa.float64()))
            finite = np.isfinite(columns[spec.name])
            add_check(
                ok & ~finite,
                lambda row, s=spec: f"{s.what} {value(s.name, row)!r} is not a finite number",
            )
            add_check(
                ok & finite & (np.abs(columns[spec.name]) > MAX_RATING_MAGNITUDE),
                lambda row, s=spec: (
                    f"{s.what} {value(s.name, row)!r} is too large to be stored exactly "
                    f"(ratings must lie within ±{MAX_RATING_MAGNITUDE:,.0f})"
                ),
            )
            rating_name = spec.name
        else:  # seconds or time
            is_seconds = _np(pc.match_substring_regex(col, _SECONDS_RE))
            seconds = _np(_as_trimmed_text(col, is_seconds, b"0").cast(pa.int64()))
            days, in_range = _seconds_to_days(seconds)
            ok = is_seconds & in_range
            is_date = np.zeros(n, dtype=bool)
            real_date = np.zeros(n, dtype=bool)
            expected = "unix seconds"
            if spec.kind == "time":
                is_date = _np(pc.match_substring_regex(col, _DATE_RE))
                text = _as_trimmed_text(col, is_date, b"1970-01-01")
                year, month, day = (
                    _np(pc.utf8_slice_codeunits(text, a, b).cast(pa.int64()))
                    for a, b in ((0, 4), (5, 7), (8, 10))
                )
                date_days, real = calendar_days(year, month, day)
                real_date = is_date & real
                days = np.where(real_date, date_days, days)
                ok = ok | real_date
                expected = "unix seconds or a YYYY-MM-DD date"
            add_check(
                ~(is_seconds | is_date),
                lambda row, s=spec, e=expected: f"{s.what} {value(s.name, row)!r} is not {e}",
            )
            add_check(
                is_date & ~real_date,
                lambda row, s=spec: (
                    f"{s.what} {value(s.name, row)!r} is not a valid YYYY-MM-DD date"
                ),
            )
            add_check(
                is_seconds & ~in_range,
                lambda row, s=spec: (
                    f"{s.what} {value(s.name, row)!r} is outside the years 0001–9999"
                ),
            )
            columns[spec.name] = np.where(ok, days, 0).astype(np.int32)

    parsed = ~blank
    for bad, _ in checks:
        parsed &= ~bad

    scale = None
    if rating_name is not None and scale_rule is not None:
        ratings = columns[rating_name]
        scale, unstorable, why = _storable_scale(path, ratings, parsed, scale_rule, skip_bad)
        add_check(
            unstorable,
            lambda row: f"rating {value(rating_name, row)!r} cannot be stored {why[row]}",
        )
        parsed &= ~unstorable
        off_scale = scale.invalid_mask(ratings) & parsed
        described = _describe_scale(scale)
        add_check(
            off_scale,
            lambda row: f"rating {value(rating_name, row)!r} is outside the scale {described}",
        )
        parsed &= ~off_scale

    first_bad_row = None
    first_reason = ""
    for bad, reason in checks:
        hits = np.flatnonzero(bad[:first_bad_row])  # only rows before the best so far
        if hits.size:
            first_bad_row = int(hits[0])
            first_reason = reason(first_bad_row)

    gaps = np.sort(np.array([ln for ln, _ in wrong_shape if ln is not None], dtype=np.int64))
    first_line = layout.header_lines + 1
    candidates: list[tuple[int | None, str]] = []
    if wrong_shape:
        line0, text0 = wrong_shape[0]
        candidates.append((line0, f"expected {layout.description}, got {_shown(text0)!r}"))
    if first_bad_row is not None:
        line = int(_lines_of_rows(np.array([first_bad_row]), gaps, first_line)[0])
        if len(gaps) != len(wrong_shape):
            line = None  # pyarrow could not number some lines; do not guess
        candidates.append((line, first_reason))
    first_error = None
    if candidates:
        first_error = min(candidates, key=lambda c: (c[0] is None, c[0] or 0))
    n_bad = len(wrong_shape) + int(np.count_nonzero(~blank & ~parsed))
    return _Diagnosis(columns, parsed, first_error, n_bad, scale)


def _row_text(raw: dict, names: list[str], layout: TableLayout, row: int) -> str:
    return _shown(
        layout.delimiter.join(
            v.decode("latin-1") if isinstance(v, bytes) else str(v)
            for v in (raw[name][row].as_py() for name in names)
        )
    )


# ----------------------------------------------------------------------------- entry point


def read_checked(
    path: str | Path,
    layout: TableLayout,
    *,
    skip_bad_lines: bool = False,
    scale_rule: ScaleRule | None = None,
    data: bytes | None = None,
) -> CheckedTable:
    """Read a delimited file into checked columns (see :class:`CheckedTable`).

    ``data`` replaces the file's bytes (e.g. re-encoded or whitespace-collapsed text with the same
    lines); ``path`` still names the file in errors. ``scale_rule`` chooses the scale the
    ``rating`` field is checked against. Raises :class:`DataFormatError` at the first bad line
    unless ``skip_bad_lines``.
    """
    path = Path(path)
    if data is None and inputs.is_gzip(path):
        data = inputs.read_bytes(path)
    inputs.refuse_binary(path, data[:_HEAD_BYTES] if data is not None else read_head(path))
    fast = _fast_read(path, layout, data)
    rating_name = next((f.name for f in layout.fields if f.kind == "rating"), None)
    if fast is not None:
        n_rows = fast.pop("__rows__")
        if rating_name is not None and scale_rule is not None:
            ratings = fast[rating_name]
            try:
                scale = scale_rule(ratings)
            except ValueError:
                scale = None  # the diagnostic path says which line
            if (
                scale is not None
                and scale.storage_problem() is None
                and not scale.invalid_mask(ratings).any()
            ):
                return CheckedTable(fast, n_rows, scale, 0)
            # Off-scale or unstorable ratings: the diagnostic path finds their lines.
        else:
            return CheckedTable(fast, n_rows, None, 0)

    diagnosis = _diagnose(path, layout, data, scale_rule, skip_bad_lines)
    if diagnosis.first_error is not None and not skip_bad_lines:
        line, reason = diagnosis.first_error
        raise DataFormatError(path, reason, line=line)
    keep = diagnosis.good
    columns = {
        name: (col.filter(pa.array(keep)) if isinstance(col, pa.Array) else col[keep])
        for name, col in diagnosis.columns.items()
    }
    return CheckedTable(columns, int(np.count_nonzero(keep)), diagnosis.scale, diagnosis.n_bad)


# ----------------------------------------------------------------------------- generic files


_DELIMITER_NAMES = {",": "comma", "\t": "tab", ";": "semicolon", " ": "whitespace"}


def _is_number(text: str) -> bool:
    return re.fullmatch(_NUMBER_RE, text) is not None


def sniff_delimiter(line: str) -> str | None:
    """The delimiter of a line of fields: the most frequent of tab, comma and semicolon, else
    ``" "`` (runs of whitespace) when the line has inner whitespace, else None."""
    counts = {d: line.count(d) for d in ("\t", ",", ";")}
    best = max(counts, key=lambda d: counts[d])
    if counts[best] > 0:
        return best
    return " " if len(line.split()) > 1 else None


def split_fields(line: str, delimiter: str) -> list[str]:
    """The fields of one line (``" "`` splits on runs of whitespace)."""
    return line.split() if delimiter == " " else line.split(delimiter)


def has_header(line: str, delimiter: str) -> bool:
    """True when no field of ``line`` is a number (so it names the columns)."""
    fields = [f.strip().strip('"') for f in split_fields(line, delimiter)]
    return not any(_is_number(f) for f in fields)


def collapse_whitespace(data: bytes) -> bytes:
    """Turn runs of spaces/tabs into one space and drop them at line starts and ends, keeping
    every newline (so line numbers stay put). Vectorised over the bytes."""
    buf = np.frombuffer(data, dtype=np.uint8)
    if buf.size == 0:
        return data
    ws = (buf == 0x20) | (buf == 0x09)
    eol = (buf == 0x0A) | (buf == 0x0D)
    after_gap = np.concatenate(([True], ws[:-1] | eol[:-1]))
    run_start = ws & ~after_gap  # first blank of an inner or trailing run
    # Where each run ends: the next non-blank byte (or the end of the data).
    non_ws = np.flatnonzero(~ws)
    starts = np.flatnonzero(run_start)
    nxt = np.searchsorted(non_ws, starts)
    at_end = nxt >= non_ws.size
    nxt_byte_is_eol = np.zeros(starts.size, dtype=bool)
    nxt_byte_is_eol[~at_end] = eol[non_ws[nxt[~at_end]]]
    keep_ws = np.zeros(buf.size, dtype=bool)
    keep_ws[starts[~at_end & ~nxt_byte_is_eol]] = True
    keep = ~ws | keep_ws
    out = buf[keep].copy()
    out[out == 0x09] = 0x20
    return out.tobytes()


def read_generic(
    path: str | Path,
    *,
    delimiter: str | None = None,
    scale: RatingScale | None = None,
    skip_bad_lines: bool = False,
) -> Ratings:
    """Read a ``user,item,rating[,timestamp]`` file into :class:`Ratings`.

    The delimiter (comma, tab, semicolon, or runs of whitespace given as ``" "``) is sniffed from
    the first line unless given; a first line without any numeric field is a header. Ids must be
    non-negative integers. The optional timestamp is unix seconds or a ``YYYY-MM-DD`` date; without
    it ``days`` is None. Ratings are checked against ``scale``, or against
    :meth:`RatingScale.infer` of the ratings when ``scale`` is None; the scale used is returned
    in ``Ratings.scale``. Bad lines raise :class:`DataFormatError` (file, line, reason) unless
    ``skip_bad_lines``, which drops and counts them.

    Returns ``Ratings`` with ``(n_ratings,)`` columns.
    """
    path = Path(path)
    lines = first_lines(path, 2)
    if not lines:
        raise DataFormatError(path, "empty file")
    if delimiter is None:
        delimiter = sniff_delimiter(lines[0][1])
        if delimiter is None:
            raise DataFormatError(
                path,
                "cannot tell the delimiter: expected user, item, rating[, timestamp]",
                line=lines[0][0],
            )
    if delimiter not in _DELIMITER_NAMES:
        raise ValueError(
            f"delimiter must be one of {sorted(_DELIMITER_NAMES)!r}, not {delimiter!r}"
        )

    header_lines = 0
    if has_header(lines[0][1], delimiter):
        header_lines = lines[0][0]
        if len(lines) < 2:
            raise DataFormatError(path, "no ratings after the header line", line=header_lines)
        lines = lines[1:]
    data_line_no, data_line = lines[0]
    n_fields = len(split_fields(data_line, delimiter))
    if n_fields not in (3, 4):
        raise DataFormatError(
            path,
            f"expected 3 or 4 {_DELIMITER_NAMES[delimiter]}-separated fields "
            f"(user, item, rating[, timestamp]), found {n_fields}: {_shown(data_line)!r}",
            line=data_line_no,
        )
    fields = [
        FieldSpec("user", "id", "user id"),
        FieldSpec("item", "id", "item id"),
        FieldSpec("rating", "rating", "rating"),
    ]
    if n_fields == 4:
        fields.append(FieldSpec("timestamp", "time", "timestamp"))
    layout = TableLayout(
        fields=tuple(fields),
        delimiter=delimiter,
        description=f"{n_fields} {_DELIMITER_NAMES[delimiter]}-separated fields "
        f"(user, item, rating{', timestamp' if n_fields == 4 else ''})",
        header_lines=header_lines,
        quoted=delimiter in (",", ";"),
    )
    data = collapse_whitespace(inputs.read_bytes(path)) if delimiter == " " else None

    def rule(ratings: np.ndarray) -> RatingScale:
        return scale if scale is not None else RatingScale.infer(ratings)

    table = read_checked(path, layout, skip_bad_lines=skip_bad_lines, scale_rule=rule, data=data)
    if table.n_rows == 0:
        raise DataFormatError(path, no_ratings_reason(table.skipped_lines))
    return Ratings(
        table.columns["user"],
        table.columns["item"],
        table.columns["rating"],
        table.columns.get("timestamp"),
        table.scale,
        [str(path)],
        table.skipped_lines,
    )


def no_ratings_reason(skipped: int) -> str:
    """Why a file yielded no ratings."""
    return f"no valid ratings ({skipped} bad lines skipped)" if skipped else "no ratings in file"
