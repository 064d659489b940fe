"""Shared pieces of the reader fuzz tests: token pools with their meaning, an oracle for
delimited files, and the checks every successful read must pass.

A structured fuzz file is built from *tokens* whose meaning is known without running the
reader: ``good`` (a value the format accepts, with its exact value), ``bad`` (refused whatever
the rest of the file) and ``maybe`` (a number valid on its own that may not fit one storable
scale with the others, such as ``100000`` beside 1–5 stars). Tokens never contain the
delimiter, quotes, NUL or line breaks (those are fuzzed as raw bytes instead).
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hypothesis import event
from hypothesis import strategies as st

from aerec.data.errors import DataFormatError
from aerec.data.ratings import MAX_DAY, MIN_DAY, Ratings

EPOCH = dt.date(1970, 1, 1)


def examples(default: int) -> int:
    """Hypothesis examples per fuzz test: ``default`` (bounded for the test suite), or
    ``AEREC_FUZZ_EXAMPLES`` for a longer campaign."""
    return int(os.environ.get("AEREC_FUZZ_EXAMPLES", "0")) or default


MIN_SECONDS = MIN_DAY * 86400
MAX_SECONDS = (MAX_DAY + 1) * 86400 - 1


@dataclass(frozen=True)
class Tok:
    text: bytes
    kind: str  # "good", "maybe" or "bad"
    value: float | int | None = None


def _bad(*texts: bytes) -> st.SearchStrategy[Tok]:
    return st.sampled_from([Tok(t, "bad") for t in texts])


# --------------------------------------------------------------------------- id tokens

BAD_ID_TEXTS = (b"-1", b"1.5", b"abc", b"1e3", b"0x10", b"10000000000000000000", b"+5",
                b"\xff\xfe", "\u0661".encode(), b"12a")


def id_tokens(padded: bool, empty: bool) -> st.SearchStrategy[Tok]:
    """Non-negative ids up to 18 digits (good), and refused spellings (bad)."""
    good = st.one_of(
        st.integers(0, 10**18 - 1).map(lambda v: Tok(str(v).encode(), "good", v)),
        st.integers(0, 999).map(lambda v: Tok(f"{v:05d}".encode(), "good", v)),
    )
    if padded:
        good = st.one_of(good, st.integers(0, 99).map(lambda v: Tok(f" {v} ".encode(), "good", v)))
    bad = BAD_ID_TEXTS + ((b"",) if empty else ())
    return st.one_of(good, good, _bad(*bad))


# --------------------------------------------------------------------------- rating tokens


def generic_rating_tokens(padded: bool, empty: bool) -> st.SearchStrategy[Tok]:
    """Multiples of 0.5 in [-2, 100] (good: they always fit one storable scale), numbers that
    may not fit with the others (maybe), and refused ones (bad)."""
    halves = st.integers(-4, 200).map(lambda k: k / 2)
    good = st.one_of(
        halves.map(lambda v: Tok(f"{v:g}".encode(), "good", v)),
        halves.map(lambda v: Tok(f"{v:.1f}".encode(), "good", v)),
        st.sampled_from([Tok(b"+4", "good", 4.0), Tok(b".5", "good", 0.5),
                         Tok(b"1e1", "good", 10.0), Tok(b"3.", "good", 3.0)]),
    )
    if padded:
        good = st.one_of(good, st.just(Tok(b" 4 ", "good", 4.0)))
    maybe = st.sampled_from([Tok(b"100000", "maybe", 100000.0), Tok(b"-100000", "maybe", -1e5),
                             Tok(b"10000000", "maybe", 1e7), Tok(b"9999999.5", "maybe", 9999999.5),
                             Tok(b"0.125", "maybe", 0.125), Tok(b"3.3", "maybe", 3.3),
                             Tok(b"0.001", "maybe", 0.001), Tok(b"1e-400", "maybe", 0.0)])
    bad = [b"nan", b"inf", b"-inf", b"1e400", b"four", b"1e10", b"16777216", b"10000000.5",
           b"4..5", b"0x4", b"\xff"]
    if empty:
        bad.append(b"")
    return st.one_of(good, good, good, maybe, _bad(*bad))


def star_tokens(half: bool, empty: bool) -> st.SearchStrategy[Tok]:
    """MovieLens stars: whole 1–5 (or half stars 0.5–5) are good, anything else bad."""
    steps = st.integers(1, 10).map(lambda k: k / 2) if half else st.integers(1, 5).map(float)
    good = st.one_of(
        steps.map(lambda v: Tok(f"{v:g}".encode(), "good", v)),
        steps.map(lambda v: Tok(f"{v:.1f}".encode(), "good", v)),
    )
    bad = [b"0", b"6", b"5.5", b"0.25", b"nan", b"1e400", b"abc", b"100000", b"0x3", b"-1"]
    if not half:
        bad.append(b"4.5")
    if empty:
        bad.append(b"")
    return st.one_of(good, good, good, _bad(*bad))


# --------------------------------------------------------------------------- time tokens

BAD_DATE_TEXTS = (b"2005-02-30", b"2005-02-29", b"0000-01-01", b"2005-13-01", b"2005-00-10",
                  b"2005-01-32", b"2005-1-01")


def date_tokens() -> st.SearchStrategy[Tok]:
    return st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)).map(
        lambda d: Tok(d.isoformat().encode(), "good", (d - EPOCH).days)
    )


def seconds_tokens(empty: bool, dates_ok: bool) -> st.SearchStrategy[Tok]:
    """Unix seconds within the years 0001–9999 (good; ``days`` as value), and refused ones.
    With ``dates_ok`` (generic files) ``YYYY-MM-DD`` dates are good too."""
    secs = st.one_of(
        st.integers(MIN_SECONDS, MAX_SECONDS),
        st.sampled_from([MIN_SECONDS, MAX_SECONDS, 0, -1, 86399, 86400]),
    ).map(lambda s: Tok(str(s).encode(), "good", s // 86400))
    bad = [str(MAX_SECONDS + 1).encode(), str(MIN_SECONDS - 1).encode(), b"1.5", b"abc",
           b"01/02/2003", b"0x10", b"99999999999999999"]
    bad += list(BAD_DATE_TEXTS) + [b"10000-01-01"]
    if not dates_ok:
        bad.append(b"2005-01-01")
    if empty:
        bad.append(b"")
    good = st.one_of(secs, date_tokens()) if dates_ok else secs
    return st.one_of(good, good, _bad(*bad))


# --------------------------------------------------------------------------- delimited files


@dataclass
class Built:
    """A fuzz file: its bytes and, per physical line (1-based), what the oracle expects."""

    data: bytes
    rows: list[tuple[int, list[Tok] | None]]  # (line, tokens) of data rows; None: blank line
    header_lines: int


@st.composite
def delimited_file(draw, field_tokens, delimiter: bytes, header: bytes | None = None,
                   max_rows: int = 12) -> Built:
    """Rows of tokens joined by ``delimiter``, with blank lines, CRLF and a missing final
    newline drawn too. ``field_tokens`` is one strategy per field."""
    n = draw(st.integers(1, max_rows))
    eol = draw(st.sampled_from([b"\n", b"\r\n"]))
    lines: list[bytes] = []
    rows: list[tuple[int, list[Tok] | None]] = []
    if header is not None:
        lines.append(header)
    for _ in range(n):
        if draw(st.integers(0, 9)) == 0:
            lines.append(b"")
            rows.append((len(lines), None))
        toks = [draw(s) for s in field_tokens]
        lines.append(delimiter.join(t.text for t in toks))
        rows.append((len(lines), toks))
    data = eol.join(lines) + (eol if draw(st.booleans()) else b"")
    return Built(data, rows, 1 if header is not None else 0)


def row_status(toks: list[Tok] | None) -> str:
    """blank (ignored), bad, maybe or good."""
    if toks is None or all(t.text == b"" for t in toks):
        return "blank"
    kinds = {t.kind for t in toks}
    if "bad" in kinds:
        return "bad"
    return "maybe" if "maybe" in kinds else "good"


def write_variant(path: Path, data: bytes, compress: bool) -> Path:
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


def check_ratings_valid(r: Ratings) -> None:
    """What every successful read guarantees: equal lengths, ids in range, ratings finite, on
    a storable scale and coming back exactly from the store's codes, real dates."""
    n = len(r)
    assert n > 0
    assert len(r.user_ids) == len(r.movie_ids) == n
    for ids in (r.user_ids, r.movie_ids):
        assert ids.dtype == np.int64 and ids.min() >= 0 and ids.max() < 10**18
    assert r.scale is not None and r.scale.storage_problem() is None
    assert np.all(np.isfinite(r.ratings)) and not r.scale.invalid_mask(r.ratings).any()
    back = r.scale.decode(r.scale.codes(r.ratings)).astype(np.float64)
    ulp = np.spacing(np.maximum(np.abs(r.ratings), np.float32(r.scale.step))).astype(np.float64)
    assert np.all(np.abs(back - r.ratings) <= 4 * ulp), "a stored rating comes back changed"
    if r.days is not None:
        assert r.days.dtype == np.int32 and len(r.days) == n
        assert r.days.min() >= MIN_DAY and r.days.max() <= MAX_DAY


def check_delimited_outcome(
    read, path: Path, built: Built, fields: tuple[str, ...], skip: bool
) -> None:
    """The property of every delimited reader (generic, MovieLens): the file reads to exactly
    the oracle's rows, or raises a DataFormatError at the oracle's first bad line (a maybe row
    may stop it earlier, with a storage or scale reason)."""
    data_rows = [(line, toks) for line, toks in built.rows if row_status(toks) != "blank"]
    status = [row_status(toks) for _, toks in data_rows]
    first_bad = next((line for (line, _), s in zip(data_rows, status) if s == "bad"), None)
    has_maybe = "maybe" in status
    try:
        r = read(path, skip_bad_lines=skip)
    except DataFormatError as exc:
        event("outcome: DataFormatError")
        assert exc.path == str(path)
        if skip:
            assert ("no valid ratings" in exc.reason or "storable scale" in exc.reason
                    or "cannot fit a rating scale" in exc.reason), exc
            return
        assert exc.line is not None, exc
        if first_bad is not None and exc.line == first_bad:
            return
        assert has_maybe, exc
        assert first_bad is None or exc.line < first_bad, exc
        first_maybe = next(line for (line, _), s in zip(data_rows, status) if s == "maybe")
        assert exc.line >= first_maybe, exc
        assert "cannot be stored" in exc.reason or "outside the scale" in exc.reason, exc
        return
    event("outcome: read")
    check_ratings_valid(r)
    kept = [(line, toks) for (line, toks), s in zip(data_rows, status) if s != "bad"]
    if not skip:
        assert first_bad is None, f"line {first_bad} is bad but the file was read"
        assert r.skipped_lines == 0
        expected = kept
    else:
        assert r.skipped_lines == len(data_rows) - len(r)
        expected = kept if not has_maybe else None
    got = list(zip(r.user_ids.tolist(), r.movie_ids.tolist(), r.ratings.tolist(),
                   r.days.tolist() if r.days is not None else [None] * len(r)))

    def as_tuple(toks: list[Tok]) -> tuple:
        values = dict(zip(fields, (t.value for t in toks)))
        return (values["user"], values["item"], float(np.float32(values["rating"])),
                values.get("time"))

    want = [as_tuple(toks) for _, toks in kept]
    if expected is not None:
        assert got == want
    else:  # some maybe rows may have been dropped: what is left keeps its order and values
        it = iter(want)
        assert all(any(g == w for w in it) for g in got), (got, want)
