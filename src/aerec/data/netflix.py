"""Readers for the Netflix Prize files: ``combined_data_N.txt``, ``training_set/mv_*.txt``,
``probe.txt``, ``qualifying.txt`` and ``movie_titles.(csv|txt)``.

Every reader parses the raw bytes with vectorised NumPy — never a Python loop over lines:

* newline positions come from ``np.flatnonzero(buf == b"\\n")``; a trailing ``\\r`` is dropped
  and an unterminated final line is still a line;
* a line ending in ``:`` is a ``MovieID:`` header; every row belongs to the last header above it
  (each header's id is ``np.repeat``-ed over the rows up to the next one);
* a row is parsed from its end: ``,YYYY-MM-DD`` and ``,R`` have fixed widths, so their bytes are
  gathered at fixed offsets from the line end; the variable-width customer id that remains is
  read digit column by digit column;
* dates become days since 1970-01-01 through a month-start lookup table.

Files are cut at line boundaries into chunks of 256 KiB that are parsed in a small thread
pool (NumPy releases the GIL in its loops) straight into preallocated output columns, so the
peak memory is the file's bytes plus the output columns plus a few MiB of chunk temporaries.

A bad line raises :class:`~aerec.data.errors.DataFormatError` naming the file, the 1-based
number of the *first* bad line, and why (found vectorised, then explained from that one line).
With ``skip_bad_lines=True`` bad rows — and rows under a bad or missing header — are dropped
and counted in :attr:`Ratings.skipped_lines` instead.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aerec.data import inputs
from aerec.data.errors import DataFormatError
from aerec.data.ratings import Ratings, RatingScale, Titles, month_tables

__all__ = [
    "NETFLIX_SCALE",
    "looks_like_combined",
    "looks_like_probe",
    "looks_like_qualifying",
    "looks_like_titles",
    "read_combined",
    "read_movie_titles",
    "read_probe",
    "read_qualifying",
    "read_training_set",
]

#: The Netflix Prize rating scale: whole stars 1–5.
NETFLIX_SCALE = RatingScale(1.0, 5.0, 1.0)

_NL, _CR, _COLON, _COMMA, _DASH, _ZERO, _QUOTE = 10, 13, 58, 44, 45, 48, 34
_BOM = b"\xef\xbb\xbf"
#: Bytes per parsing chunk: big enough that per-chunk Python overhead is noise, small enough
#: that a chunk's temporaries stay in the CPU caches and below malloc's mmap threshold (1 MiB
#: chunks spend ~40 % more time, mostly in page faults of fresh temporaries).
_CHUNK_BYTES = 256 << 10
#: Longest id we read (18 digits always fit in int64).
_MAX_ID_DIGITS = 18
#: Sentinel movie ids while parsing: rows with no header above them, rows under a bad header,
#: and rows at the top of a chunk that continue the previous chunk's last movie.
_NO_HEADER, _BAD_HEADER, _INHERIT = -1, -2, -3
_SNIFF_BYTES = 8192
#: Head of each file checked for binary data (NUL or control bytes).
_BINARY_SNIFF_BYTES = 64 * 1024


def _default_threads() -> int:
    return max(1, min(2, os.cpu_count() or 1))


# --------------------------------------------------------------------------------------------
# Row formats
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _RowFormat:
    """What follows the customer id on a data row: ``,R,YYYY-MM-DD``, ``,YYYY-MM-DD`` or nothing."""

    name: str
    tail: int  # bytes after the customer id, including the separating commas
    has_rating: bool
    has_date: bool

    @property
    def fields(self) -> int:
        return 1 + self.has_rating + self.has_date

    @property
    def min_len(self) -> int:
        return 1 + self.tail


_RATING_ROW = _RowFormat("CustomerID,Rating,Date", 13, True, True)
_QUALIFYING_ROW = _RowFormat("CustomerID,Date", 11, False, True)
_PROBE_ROW = _RowFormat("CustomerID", 0, False, False)


#: The calendar shared with every reader (years 0001–9999; see ``ratings.calendar_days``).
_month_tables = month_tables


# --------------------------------------------------------------------------------------------
# Vectorised primitives
# --------------------------------------------------------------------------------------------


def _parse_uint(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Read the decimal integers in ``buf[starts[i]:ends[i]]``, digit column by digit column.

    Returns ``(values, ok)``, both shape ``(n,)``: ``values`` int64 (garbage where not ok),
    ``ok`` False where the field is empty, longer than 18 digits or holds a non-digit byte.
    """
    n = len(starts)
    width = ends - starts
    ok = (width >= 1) & (width <= _MAX_ID_DIGITS)
    if not n:
        return np.zeros(0, dtype=np.int64), ok
    max_width = min(int(width.max()), _MAX_ID_DIGITS)
    min_width = int(width.min())
    # int32 is enough for ≤ 9 digits and halves the memory traffic.
    acc_type = np.int32 if max_width <= 9 else np.int64
    values = np.zeros(n, dtype=acc_type)
    # Positions left of a short field land in earlier bytes (masked out below); a negative one
    # wraps to the buffer's end, which is harmless unless the buffer is tiny.
    tiny = len(buf) <= _MAX_ID_DIGITS + 1
    last = ends - 1
    for k in range(max_width):  # one pass per digit column (≤ 18), never per line
        pos = last - k
        if tiny:
            np.clip(pos, 0, len(buf) - 1, out=pos)
        digit = buf[pos]
        digit -= np.uint8(_ZERO)  # a non-digit wraps to > 9
        if k >= min_width:
            digit *= width > k  # zero outside the field
        ok &= digit <= 9
        values += digit * acc_type(10**k)  # uint8 * typed scalar → acc_type, no astype pass
    return values.astype(np.int64, copy=False), ok


def _line_bounds(chunk: np.ndarray, is_last: bool) -> tuple[np.ndarray, np.ndarray]:
    """Start and (exclusive, ``\\r``-stripped) end of each line of ``chunk``.

    A chunk ends just after a newline, except the file's last chunk, whose final line may
    lack one. Positions are int64, shape ``(lines,)``.
    """
    ends = np.flatnonzero(chunk == _NL)
    if is_last and len(chunk) and chunk[-1] != _NL:
        ends = np.append(ends, len(chunk))
    starts = np.empty_like(ends)
    if len(ends):
        starts[0] = 0
        np.add(ends[:-1], 1, out=starts[1:])
        # ends - 1 of an empty first line is -1: it wraps to the chunk's last byte, and the
        # ends > starts test discards it.
        cr = chunk[ends - 1] == _CR
        cr &= ends > starts
        ends -= cr
    return starts, ends


def _next_line_start(buf: np.ndarray, pos: int) -> int:
    """Index just after the first newline at or after ``pos`` (``len(buf)`` if none)."""
    n = len(buf)
    while pos < n:
        window = buf[pos : pos + (1 << 16)]
        hit = np.flatnonzero(window == _NL)
        if len(hit):
            return pos + int(hit[0]) + 1
        pos += len(window)
    return n


def _chunk_bounds(buf: np.ndarray, begin: int, chunk_bytes: int) -> list[tuple[int, int]]:
    """Cut ``buf[begin:]`` into ``(lo, hi)`` byte ranges that end at line boundaries."""
    bounds = []
    lo = begin
    n = len(buf)
    while lo < n:
        hi = n if lo + chunk_bytes >= n else _next_line_start(buf, lo + chunk_bytes)
        bounds.append((lo, hi))
        lo = hi
    return bounds


# --------------------------------------------------------------------------------------------
# The chunk parser
# --------------------------------------------------------------------------------------------


@dataclass
class _Columns:
    """Preallocated output columns, one slot per line of the buffer (rows ≤ lines)."""

    user: np.ndarray
    movie: np.ndarray
    rating: np.ndarray | None
    days: np.ndarray | None

    @classmethod
    def allocate(cls, n: int, fmt: _RowFormat) -> _Columns:
        return cls(
            np.empty(n, np.int64),
            np.empty(n, np.int64),
            np.empty(n, np.float32) if fmt.has_rating else None,
            np.empty(n, np.int32) if fmt.has_date else None,
        )

    def arrays(self) -> list[np.ndarray]:
        return [a for a in (self.user, self.movie, self.rating, self.days) if a is not None]


@dataclass
class _ChunkResult:
    rows: int = 0  # rows written at the chunk's output offset
    skipped: int = 0  # bad lines dropped (skip mode)
    leading: int = 0  # rows at the top of the chunk (before any group start): inherit a movie
    first_leading_line: int = -1  # local line index of the first of those rows
    last_movie: int | None = None  # movie of the chunk's last group (None: no group start)
    bad_line: int = -1  # local line index of the first bad line (strict mode)
    bad_kind: str = ""  # "row", "header" or "orphan"


def _parse_chunk(
    buf: np.ndarray,
    lo: int,
    hi: int,
    line_offset: int,
    fmt: _RowFormat,
    resets: np.ndarray,
    out: _Columns,
    skip_bad: bool,
) -> _ChunkResult:
    """Parse the whole lines in ``buf[lo:hi]`` into ``out[line_offset : line_offset + rows]``.

    ``resets`` are byte offsets (absolute) where the movie context restarts — the start of the
    file, or of each ``mv_*.txt`` file in a training set — so rows after one need a header of
    their own.
    """
    chunk = buf[lo:hi]
    starts, ends = _line_bounds(chunk, hi == len(buf))
    res = _ChunkResult()
    if not len(starts):
        return res
    if len(chunk) < 64:  # pad tiny chunks so fixed-offset gathers of short lines stay in range
        chunk = np.concatenate([chunk, np.zeros(64, dtype=np.uint8)])
    lens = ends - starts
    last_byte = chunk[np.maximum(ends - 1, 0)]
    is_header = (lens > 0) & (last_byte == _COLON)
    del last_byte
    is_row = (lens > 0) & ~is_header

    # Headers → movie ids; a group starts at each header and at each reset.
    header_lines = np.flatnonzero(is_header)
    header_movies, header_ok = _parse_uint(chunk, starts[header_lines], ends[header_lines] - 1)
    group_start = is_header.copy()
    local_resets = np.searchsorted(ends, resets - lo, side="left")  # line index holding that byte
    group_start[local_resets[local_resets < len(starts)]] = True
    group_lines = np.flatnonzero(group_start)
    group_movie = np.full(len(group_lines) + 1, _INHERIT, dtype=np.int64)  # [0]: before any group
    group_movie[1:] = _NO_HEADER
    starts_with_header = is_header[group_lines]
    group_movie[1:][starts_with_header] = np.where(header_ok, header_movies, _BAD_HEADER)
    if len(group_lines):
        res.last_movie = int(group_movie[-1])
    del group_start, is_header

    # Rows, parsed from the line end: [cust][,R][,YYYY-MM-DD]
    row_lines = np.flatnonzero(is_row)
    del is_row
    rs = starts[row_lines]
    re_ = ends[row_lines]
    # Each group's rows are contiguous: repeat its movie id over them.
    group_first_row = np.searchsorted(row_lines, group_lines)
    rows_per_group = np.diff(group_first_row, prepend=0, append=len(row_lines))
    row_movie = np.repeat(group_movie, rows_per_group)
    bad = (re_ - rs) < fmt.min_len
    # Lines shorter than the tail are bad anyway; clamping keeps their gathers in range.
    re_safe = np.maximum(re_, fmt.tail)
    cust_end = re_safe - fmt.tail
    user, user_ok = _parse_uint(chunk, rs, np.maximum(cust_end, rs))
    bad |= ~user_ok
    del user_ok, cust_end
    rating = days = None
    if fmt.has_date:
        bad |= chunk[re_safe - 11] != _COMMA
        bad |= chunk[re_safe - 6] != _DASH
        bad |= chunk[re_safe - 3] != _DASH
        y0, y1, y2, y3, m0, m1, d0, d1 = (
            chunk[re_safe - (10 - j)] - np.uint8(_ZERO) for j in (0, 1, 2, 3, 5, 6, 8, 9)
        )
        highest = np.maximum(y0, y1)
        for d in (y2, y3, m0, m1, d0, d1):
            np.maximum(highest, d, out=highest)
        bad |= highest > 9  # some "digit" was not one
        del highest
        ten = np.int32(10)  # a typed scalar makes uint8 * ten an int32 array directly
        year = ((y0 * ten + y1) * ten + y2) * ten + y3
        month = m0 * ten + m1
        day = d0 * ten + d1
        del y0, y1, y2, y3, m0, m1, d0, d1
        month_index = year * np.int32(12) + (month - 1)
        bad |= (month < 1) | (month > 12)
        np.clip(month_index, 0, 10000 * 12 - 1, out=month_index)
        month_start, month_len = _month_tables()
        bad |= (day < 1) | (day > month_len[month_index])
        days = month_start[month_index] + (day - 1)
        del year, month, day, month_index
    if fmt.has_rating:
        bad |= chunk[re_safe - 13] != _COMMA
        stars = chunk[re_safe - 12] - np.uint8(_ZERO + 1)  # '1'..'5' → 0..4
        bad |= stars > 4
        rating = stars + np.float32(1)  # float32 directly
        del stars

    orphan = row_movie == _NO_HEADER
    under_bad_header = row_movie == _BAD_HEADER
    leading = row_movie == _INHERIT
    res.leading = int(np.count_nonzero(leading))
    if res.leading:
        res.first_leading_line = int(row_lines[0])

    if not skip_bad:
        bad_header = np.flatnonzero(~header_ok)
        bad_rows = np.flatnonzero(bad | orphan)
        candidates = []
        if len(bad_header):
            candidates.append((int(header_lines[bad_header[0]]), "header"))
        if len(bad_rows):
            first = bad_rows[0]
            candidates.append((int(row_lines[first]), "row" if bad[first] else "orphan"))
        if candidates:
            res.bad_line, res.bad_kind = min(candidates)
            return res
        keep = None
    else:
        drop = bad | orphan | under_bad_header
        res.skipped = int(np.count_nonzero(drop)) + int(np.count_nonzero(~header_ok))
        keep = None if not res.skipped else ~drop
        if keep is not None:
            # Leading rows stay at the top (they are fixed up once the previous chunk is known).
            res.leading = int(np.count_nonzero(leading & keep))

    def put(dst: np.ndarray, values: np.ndarray) -> None:
        chosen = values if keep is None else values[keep]
        dst[line_offset : line_offset + len(chosen)] = chosen

    put(out.user, user)
    put(out.movie, row_movie)
    if rating is not None:
        put(out.rating, rating)
    if days is not None:
        put(out.days, days)
    res.rows = len(row_lines) if keep is None else int(np.count_nonzero(keep))
    return res


# --------------------------------------------------------------------------------------------
# Whole-buffer driver
# --------------------------------------------------------------------------------------------


@dataclass
class _Parsed:
    columns: _Columns
    rows: int
    skipped: int


@dataclass
class _BadLine:
    """The first bad line of a buffer: its global 0-based line index and byte offset."""

    line: int
    byte: int
    kind: str


class _ParseFailure(Exception):
    def __init__(self, bad: _BadLine) -> None:
        super().__init__(bad.kind)
        self.bad = bad


def _parse_buffer(
    buf: np.ndarray,
    begin: int,
    fmt: _RowFormat,
    resets: np.ndarray,
    skip_bad: bool,
    threads: int | None = None,
    chunk_bytes: int | None = None,
) -> _Parsed:
    """Parse ``buf[begin:]`` (whole lines) into columns; raise :class:`_ParseFailure` on the
    first bad line unless ``skip_bad``. ``resets`` (sorted byte offsets) are where a new file
    starts: rows after one need a header of their own."""
    bounds = _chunk_bounds(buf, begin, chunk_bytes or _CHUNK_BYTES)
    threads = threads or _default_threads()
    pool = ThreadPoolExecutor(threads) if threads > 1 and len(bounds) > 1 else None
    try:
        mapper = pool.map if pool is not None else map

        def count_lines(b: tuple[int, int]) -> int:
            lo, hi = b
            n = int(np.count_nonzero(buf[lo:hi] == _NL))
            return n + (hi == len(buf) and hi > lo and buf[hi - 1] != _NL)

        line_counts = list(mapper(count_lines, bounds))
        offsets = np.concatenate([[0], np.cumsum(line_counts)]).astype(np.int64)
        columns = _Columns.allocate(int(offsets[-1]), fmt)

        def parse(k: int) -> _ChunkResult:
            lo, hi = bounds[k]
            in_chunk = resets[np.searchsorted(resets, lo) : np.searchsorted(resets, hi)]
            return _parse_chunk(buf, lo, hi, int(offsets[k]), fmt, in_chunk, columns, skip_bad)

        results = list(mapper(parse, range(len(bounds))))
    finally:
        if pool is not None:
            pool.shutdown()

    if not skip_bad:
        failed = [(offsets[k] + r.bad_line, k, r) for k, r in enumerate(results) if r.bad_line >= 0]
        first = min(failed, key=lambda t: t[0]) if failed else None
        # Rows continuing a previous chunk's header-less group are orphans too.
        current: int | None = None
        for k, r in enumerate(results):
            if r.leading and current == _NO_HEADER:
                line = offsets[k] + r.first_leading_line
                if first is None or line < first[0]:
                    first = (line, k, None)
                break
            if r.last_movie is not None:
                current = r.last_movie
        if first is not None:
            line, k, r = first
            kind = r.bad_kind if r is not None else "orphan"
            local = int(line - offsets[k])
            raise _ParseFailure(_BadLine(int(line), _line_start_byte(buf, bounds[k], local), kind))

    # Fix up leading rows and close the gaps between chunks (each chunk wrote at its line offset).
    total = 0
    skipped = 0
    current = None
    for k, r in enumerate(results):
        src, n, lead = int(offsets[k]), r.rows, r.leading
        skipped += r.skipped
        if lead:
            if current is None or current < 0:  # no usable header above: drop (skip mode only)
                skipped += lead
                src, n = src + lead, n - lead
            else:
                columns.movie[src : src + lead] = current
        if n and src != total:
            for a in columns.arrays():
                a[total : total + n] = a[src : src + n]
        total += n
        if r.last_movie is not None:
            current = r.last_movie
    return _Parsed(columns, total, skipped)


def _line_start_byte(buf: np.ndarray, bound: tuple[int, int], local_line: int) -> int:
    lo, hi = bound
    if local_line == 0:
        return lo
    newlines = np.flatnonzero(buf[lo:hi] == _NL)
    return lo + int(newlines[local_line - 1]) + 1


def _trimmed(a: np.ndarray, n: int) -> np.ndarray:
    """``a[:n]``, copied when the unused tail would waste more than an eighth of the memory."""
    return a[:n].copy() if n < len(a) - len(a) // 8 else a[:n]


# --------------------------------------------------------------------------------------------
# Error explanation (one line, in Python: only ever the first bad line)
# --------------------------------------------------------------------------------------------

_DIGITS = re.compile(rb"[0-9]+")
_DATE = re.compile(rb"([0-9]{4})-([0-9]{2})-([0-9]{2})")


def _show(raw: bytes, limit: int = 60) -> str:
    text = raw.decode("latin-1")
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _line_text(buf: np.ndarray, byte: int) -> bytes:
    end = _next_line_start(buf, byte)
    return bytes(buf[byte:end]).rstrip(b"\n").rstrip(b"\r")


def _valid_date(raw: bytes) -> bool:
    m = _DATE.fullmatch(raw)
    if not m:
        return False
    year, month, day = (int(g) for g in m.groups())
    if year < 1 or not 1 <= month <= 12:
        return False
    _, month_len = _month_tables()
    return 1 <= day <= month_len[year * 12 + month - 1]


def _explain_row(line: bytes, fmt: _RowFormat) -> str:
    fields = line.split(b",")
    if len(fields) != fmt.fields:
        return (
            f"expected {fmt.name} ({fmt.fields} field{'s' if fmt.fields > 1 else ''}), "
            f"got {len(fields)} in {_show(line)}"
        )
    cust = fields[0]
    if not _DIGITS.fullmatch(cust):
        return f"customer id {_show(cust)} is not a non-negative integer"
    if len(cust) > _MAX_ID_DIGITS:
        return f"customer id {_show(cust)} has more than {_MAX_ID_DIGITS} digits"
    if fmt.has_rating:
        stars = fields[1]
        if not _DIGITS.fullmatch(stars):
            return f"rating {_show(stars)} is not a whole number of stars from 1 to 5"
        if not 1 <= int(stars) <= 5 or len(stars) != 1:
            return f"rating {stars.decode()} is outside 1-5"
    if fmt.has_date and not _valid_date(fields[-1]):
        return f"date {_show(fields[-1])} is not a valid YYYY-MM-DD date"
    return f"malformed {fmt.name} row {_show(line)}"


def _explain(buf: np.ndarray, bad: _BadLine, fmt: _RowFormat) -> str:
    line = _line_text(buf, bad.byte)
    if bad.kind == "header":
        movie = line[:-1]
        if not movie:
            return "movie header ':' has no movie id"
        return f"movie id {_show(movie)} in header {_show(line)} is not a non-negative integer"
    if bad.kind == "orphan":
        return f"row {_show(line)} comes before any 'MovieID:' header"
    reason = _explain_row(line, fmt)
    at_eof = _next_line_start(buf, bad.byte) == len(buf) and buf[-1] != _NL
    return reason + ("; the file looks truncated" if at_eof else "")


# --------------------------------------------------------------------------------------------
# Public readers
# --------------------------------------------------------------------------------------------


def _read_bytes(path: Path) -> tuple[np.ndarray, int]:
    """The file's bytes (decompressed when gzip) and where the text starts (after a UTF-8
    byte-order mark, if any)."""
    if inputs.is_gzip(path):
        buf = np.frombuffer(inputs.read_bytes(path), dtype=np.uint8)
    else:
        try:
            buf = np.fromfile(inputs.check_regular_file(path), dtype=np.uint8)
        except OSError as exc:
            raise DataFormatError(path, f"cannot read file: {exc.strerror or exc}") from None
    if not len(buf):
        raise DataFormatError(path, "file is empty")
    begin = 3 if bytes(buf[:3]) == _BOM else 0
    inputs.refuse_binary(path, bytes(buf[begin : begin + _BINARY_SNIFF_BYTES]))
    return buf, begin


def _parse_file(
    path: Path, fmt: _RowFormat, skip_bad: bool, threads: int | None = None
) -> tuple[_Parsed, np.ndarray]:
    buf, begin = _read_bytes(path)
    try:
        parsed = _parse_buffer(
            buf, begin, fmt, np.array([begin], np.int64), skip_bad, threads=threads
        )
    except _ParseFailure as failure:
        raise DataFormatError(
            path, _explain(buf, failure.bad, fmt), line=failure.bad.line + 1
        ) from None
    if parsed.rows == 0 and parsed.skipped == 0 and _is_blank(buf[begin:]):
        raise DataFormatError(path, "file is empty (only blank lines)")
    return parsed, buf


def _is_blank(buf: np.ndarray) -> bool:
    return not np.any((buf != _NL) & (buf != _CR) & (buf != 32) & (buf != 9))


def _ratings(parsed: _Parsed, sources: list[str]) -> Ratings:
    cols, n = parsed.columns, parsed.rows
    assert cols.rating is not None and cols.days is not None
    return Ratings(
        user_ids=_trimmed(cols.user, n),
        movie_ids=_trimmed(cols.movie, n),
        ratings=_trimmed(cols.rating, n),
        days=_trimmed(cols.days, n),
        scale=NETFLIX_SCALE,
        sources=sources,
        skipped_lines=parsed.skipped,
    )


def read_combined(
    path: str | Path, *, skip_bad_lines: bool = False, threads: int | None = None
) -> Ratings:
    """Read a Kaggle ``combined_data_N.txt``: ``MovieID:`` header lines, each followed by
    ``CustomerID,Rating,Date`` rows for that movie.

    Returns :class:`Ratings` with ``n`` rows: ``user_ids``/``movie_ids`` int64 raw ids,
    ``ratings`` float32 in 1..5, ``days`` int32 days since 1970-01-01, scale 1–5 step 1,
    ``sources=[str(path)]``. ``\\r\\n`` endings, blank lines and a missing final newline are
    fine. Raises :class:`DataFormatError` at the first bad line unless ``skip_bad_lines``, which
    drops bad rows (and rows under a bad or missing header) and counts them in
    ``skipped_lines``. ``threads`` parse chunks in parallel (default: up to 2).
    """
    path = Path(path)
    parsed, _ = _parse_file(path, _RATING_ROW, skip_bad_lines, threads)
    return _ratings(parsed, [str(path)])


def read_training_set(
    folder: str | Path, *, skip_bad_lines: bool = False, threads: int | None = None
) -> Ratings:
    """Read the original ``training_set/`` folder of ``mv_0000001.txt`` … files.

    Each file is one ``MovieID:`` header and its ``CustomerID,Rating,Date`` rows. All files'
    bytes are read into one buffer (one loop step per *file*) and parsed as a single
    ``combined_data`` buffer, in file-name order; every file must start with its own header.
    Returns :class:`Ratings` like :func:`read_combined`, ``sources=[str(folder)]``; errors name
    the ``mv_*.txt`` file and its line.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFormatError(folder, "not a folder (expected training_set/ with mv_*.txt files)")
    files = sorted(folder.glob("mv_*.txt"))
    if not files:
        raise DataFormatError(folder, "no mv_*.txt files in the folder")
    for f in files:
        inputs.check_regular_file(f)  # a folder named mv_0000003.txt is an error, not a crash
    sizes = np.array([f.stat().st_size for f in files], dtype=np.int64)
    for f, size in zip(files, sizes):
        if size == 0:
            raise DataFormatError(f, "file is empty")
    buf = np.empty(int(sizes.sum()) + len(files), dtype=np.uint8)  # + room for a final '\n' each
    file_starts = np.empty(len(files), dtype=np.int64)
    pos = 0
    for k, f in enumerate(files):  # a loop over files, not ratings
        file_starts[k] = pos
        try:
            with open(f, "rb") as fh:
                got = fh.readinto(memoryview(buf[pos : pos + sizes[k]]))
        except OSError as exc:
            raise DataFormatError(f, f"cannot read file: {exc.strerror or exc}") from None
        if got != sizes[k]:
            raise DataFormatError(f, "file changed while being read")
        size = int(sizes[k])
        inputs.refuse_binary(f, bytes(buf[pos : pos + min(size, _BINARY_SNIFF_BYTES)]))
        if bytes(buf[pos : pos + 3]) == _BOM:  # drop a UTF-8 byte-order mark
            buf[pos : pos + size - 3] = buf[pos + 3 : pos + size].copy()
            size -= 3
            if size == 0:
                raise DataFormatError(f, "file is empty")
        pos += size
        if buf[pos - 1] != _NL:
            buf[pos] = _NL
            pos += 1
    buf = buf[:pos]
    try:
        parsed = _parse_buffer(buf, 0, _RATING_ROW, file_starts, skip_bad_lines, threads=threads)
    except _ParseFailure as failure:
        k = int(np.searchsorted(file_starts, failure.bad.byte, side="right")) - 1
        local_line = int(np.count_nonzero(buf[file_starts[k] : failure.bad.byte] == _NL)) + 1
        raise DataFormatError(
            files[k], _explain(buf, failure.bad, _RATING_ROW), line=local_line
        ) from None
    return _ratings(parsed, [str(folder)])


def read_probe(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read ``probe.txt``: ``MovieID:`` headers, each followed by ``CustomerID`` lines.

    Returns ``(movie_ids, user_ids)``, both int64 shape ``(n,)``, in file order.
    """
    path = Path(path)
    parsed, _ = _parse_file(path, _PROBE_ROW, False)
    n = parsed.rows
    return _trimmed(parsed.columns.movie, n), _trimmed(parsed.columns.user, n)


def read_qualifying(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``qualifying.txt``: ``MovieID:`` headers, each followed by ``CustomerID,Date`` lines.

    Returns ``(movie_ids, user_ids, days)``: int64, int64 and int32 days since 1970-01-01, each
    shape ``(n,)``, in file order.
    """
    path = Path(path)
    parsed, _ = _parse_file(path, _QUALIFYING_ROW, False)
    n = parsed.rows
    assert parsed.columns.days is not None
    return (
        _trimmed(parsed.columns.movie, n),
        _trimmed(parsed.columns.user, n),
        _trimmed(parsed.columns.days, n),
    )


# --------------------------------------------------------------------------------------------
# Titles
# --------------------------------------------------------------------------------------------

_NULL_YEARS = (b"NULL", b"", b"null", b"NaN", b"nan")


def read_movie_titles(path: str | Path) -> Titles:
    """Read ``movie_titles.csv`` / ``movie_titles.txt``: ``MovieID,YearOfRelease,Title`` lines.

    Latin-1 encoded (a file that is valid UTF-8 with non-ASCII bytes is read as UTF-8, as some
    re-encoded copies are). Each line is split at its first two commas only, so titles keep
    their commas; a ``NULL`` (or empty) year becomes 0. Trailing commas/spaces after the title
    are dropped and a fully ``"quoted"`` title is unquoted (``""`` → ``"``). A first line that
    is a column header (``MovieID,...``) is skipped. Returns :class:`Titles` in file order.
    """
    path = Path(path)
    buf, begin = _read_bytes(path)
    nul = np.flatnonzero(buf == 0)
    if len(nul):
        line = int(np.count_nonzero(buf[: nul[0]] == _NL)) + 1
        raise DataFormatError(path, "NUL byte: this is not a text titles file", line=line)
    starts, ends = _line_bounds(buf[begin:], True)
    line_numbers = np.arange(1, len(starts) + 1)
    keep = ends > starts
    starts, ends, line_numbers = starts[keep] + begin, ends[keep] + begin, line_numbers[keep]
    if not len(starts):
        raise DataFormatError(path, "file is empty (only blank lines)")

    commas = np.flatnonzero(buf == _COMMA)
    padded = np.append(commas, [len(buf), len(buf)])
    first = np.searchsorted(commas, starts)
    comma1, comma2 = padded[first], padded[first + 1]
    has_fields = comma2 < ends
    movie_ids, id_ok = _parse_uint(buf, starts, np.minimum(comma1, ends))

    if len(starts) and not id_ok[0] and has_fields[0]:
        first_field = bytes(buf[starts[0] : comma1[0]]).strip().lower()
        if b"movie" in first_field or b"id" in first_field:  # a column-header line
            starts, ends, line_numbers = starts[1:], ends[1:], line_numbers[1:]
            comma1, comma2, has_fields = comma1[1:], comma2[1:], has_fields[1:]
            movie_ids, id_ok = movie_ids[1:], id_ok[1:]

    year_start = np.minimum(comma1 + 1, ends)
    year_end = np.minimum(comma2, ends)
    years, year_ok = _parse_uint(buf, year_start, year_end)
    year_width = year_end - year_start
    null_year = np.zeros(len(starts), dtype=bool)
    for word in _NULL_YEARS:  # one vectorised pass per spelling of "unknown"
        null_year |= (year_width == len(word)) & _bytes_equal(buf, year_start, word)
    years[null_year] = 0
    year_ok |= null_year
    year_ok &= years <= 9999

    problems = [
        (~has_fields, lambda i: "expected MovieID,YearOfRelease,Title (3 comma-separated fields)"),
        (~id_ok, lambda i: f"movie id {_show(bytes(buf[starts[i] : comma1[i]]))} is not a "
                           "non-negative integer"),
        (~year_ok, lambda i: f"year {_show(bytes(buf[year_start[i] : year_end[i]]))} is not a "
                             "year or NULL"),
    ]
    bad_at = [(int(np.argmax(mask)), explain) for mask, explain in problems if mask.any()]
    if bad_at:
        i = min(i for i, _ in bad_at)
        reasons = [explain(i) for j, explain in bad_at if j == i]
        raise DataFormatError(path, reasons[0], line=int(line_numbers[i]))

    title_start = comma2 + 1
    title_end = ends.copy()
    while True:  # strip trailing commas/spaces, one byte column per pass
        tail = buf[np.maximum(title_end - 1, 0)]
        strip = (title_end > title_start) & ((tail == _COMMA) | (tail == 32) | (tail == 9))
        if not strip.any():
            break
        title_end -= strip
    quoted = (
        (title_end - title_start >= 2)
        & (buf[np.minimum(title_start, len(buf) - 1)] == _QUOTE)
        & (buf[np.maximum(title_end - 1, 0)] == _QUOTE)
    )
    title_start += quoted
    title_end -= quoted
    titles = _gather_lines(buf, title_start, title_end)
    for i in np.flatnonzero(quoted):  # only the (few) quoted titles
        titles[i] = titles[i].replace('""', '"')
    return Titles(movie_ids, titles, years.astype(np.int32))


def _bytes_equal(buf: np.ndarray, starts: np.ndarray, word: bytes) -> np.ndarray:
    eq = np.ones(len(starts), dtype=bool)
    last = len(buf) - 1
    for j, byte in enumerate(word):
        eq &= buf[np.minimum(starts + j, last)] == byte
    return eq


def _gather_lines(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> list[str]:
    """Decode ``buf[starts[i]:ends[i]]`` for every i at once: gather them, ``\\n``-separated,
    into one byte string, decode it once and split it (UTF-8 if it is valid UTF-8, else
    latin-1)."""
    lens = ends - starts + 1  # + separator
    total = int(lens.sum())
    offsets = np.cumsum(lens) - lens
    index = np.arange(total, dtype=np.int64) - np.repeat(offsets - starts, lens)
    sep = offsets + lens - 1
    index[sep] = 0
    text = buf[index]
    text[sep] = _NL
    raw = text.tobytes()
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError:
        decoded = raw.decode("latin-1")
    return decoded.split("\n")[:-1]


# --------------------------------------------------------------------------------------------
# Sniffers (read only the first few KB)
# --------------------------------------------------------------------------------------------

_HEADER_LINE = re.compile(rb"[0-9]+:")
_ROW_PATTERNS = {
    "combined": re.compile(rb"[0-9]+,[1-5],[0-9]{4}-[0-9]{2}-[0-9]{2}"),
    "qualifying": re.compile(rb"[0-9]+,[0-9]{4}-[0-9]{2}-[0-9]{2}"),
    "probe": re.compile(rb"[0-9]+"),
}
_TITLE_LINE = re.compile(rb"[0-9]+,([0-9]{4}|NULL|null)?,.*")
_TITLE_COLUMNS = re.compile(rb"[^0-9,]*(movie|id)[^,]*,.*", re.IGNORECASE)


def _head_lines(path: str | Path) -> list[bytes] | None:
    """The complete, non-blank lines within the first few KB, or None if unreadable."""
    try:
        head = inputs.read_head(path, _SNIFF_BYTES + 1)
    except (OSError, DataFormatError):
        return None
    if head.startswith(_BOM):
        head = head[3:]
    if b"\0" in head:
        return None
    lines = head.split(b"\n")
    if len(head) > _SNIFF_BYTES and len(lines) > 1:
        lines = lines[:-1]  # the cut-off last line
    return [line.rstrip(b"\r") for line in lines if line.strip()]


def _looks_like(path: str | Path, kind: str) -> bool:
    lines = _head_lines(path)
    if not lines or not _HEADER_LINE.fullmatch(lines[0]):
        return False
    rows = [line for line in lines[1:] if not _HEADER_LINE.fullmatch(line)]
    pattern = _ROW_PATTERNS[kind]
    return bool(rows) and all(pattern.fullmatch(row) for row in rows)


def looks_like_combined(path: str | Path) -> bool:
    """True if the file starts like ``combined_data_N.txt`` / ``mv_*.txt`` (``MovieID:`` then
    ``CustomerID,Rating,Date`` rows). Reads only the first few KB."""
    return _looks_like(path, "combined")


def looks_like_probe(path: str | Path) -> bool:
    """True if the file starts like ``probe.txt`` (``MovieID:`` then bare ``CustomerID`` lines)."""
    return _looks_like(path, "probe")


def looks_like_qualifying(path: str | Path) -> bool:
    """True if the file starts like ``qualifying.txt`` (``MovieID:`` then ``CustomerID,Date``)."""
    return _looks_like(path, "qualifying")


def looks_like_titles(path: str | Path) -> bool:
    """True if the file starts like ``movie_titles.csv`` (``MovieID,YearOfRelease,Title``)."""
    lines = _head_lines(path)
    if lines and _TITLE_COLUMNS.fullmatch(lines[0]):
        lines = lines[1:]  # a column-header line such as MovieID,YearOfRelease,Title
    return bool(lines) and all(_TITLE_LINE.fullmatch(line) for line in lines[:50])
