"""Netflix Prize readers: every format, every error case, and round trips.

Fixture files are written by hand (or by plain Python formatting, independent of the parser)
into ``tmp_path``.
"""

from __future__ import annotations

import datetime as dt
import gzip
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aerec.data import netflix
from aerec.data.errors import DataFormatError
from aerec.data.netflix import (
    looks_like_combined,
    looks_like_probe,
    looks_like_qualifying,
    looks_like_titles,
    read_combined,
    read_movie_titles,
    read_probe,
    read_qualifying,
    read_training_set,
)
from aerec.data.ratings import RatingScale
from tests.data import fuzz_support as fz

EPOCH = dt.date(1970, 1, 1)


def day(text: str) -> int:
    return (dt.date.fromisoformat(text) - EPOCH).days


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode("latin-1") if isinstance(text, str) else text)
    return path


COMBINED = """1:
1488844,3,2005-09-06
822109,5,2005-05-13
885013,4,2005-10-19
2:
2059652,4,2005-09-05
1666394,3,2005-04-19
3:
1025579,4,2003-03-29
"""


def expect_error(excinfo: pytest.ExceptionInfo, path: Path, line: int | None, *words: str) -> None:
    """The error names the file, the line and the reason (``path:line: reason``)."""
    err = excinfo.value
    assert err.path == str(path)
    assert err.line == line
    message = str(err)
    assert message.startswith(f"{path}:{line}: " if line is not None else f"{path}: ")
    for word in words:
        assert word.lower() in message.lower(), message


# --------------------------------------------------------------------------------------------
# combined_data
# --------------------------------------------------------------------------------------------


def test_read_combined_small(tmp_path: Path) -> None:
    path = write(tmp_path / "combined_data_1.txt", COMBINED)
    r = read_combined(path)
    assert r.user_ids.tolist() == [1488844, 822109, 885013, 2059652, 1666394, 1025579]
    assert r.movie_ids.tolist() == [1, 1, 1, 2, 2, 3]
    assert r.ratings.tolist() == [3, 5, 4, 4, 3, 4]
    assert r.days.tolist() == [
        day(d)
        for d in ["2005-09-06", "2005-05-13", "2005-10-19", "2005-09-05", "2005-04-19", "2003-03-29"]
    ]
    assert r.user_ids.dtype == np.int64 and r.movie_ids.dtype == np.int64
    assert r.ratings.dtype == np.float32 and r.days.dtype == np.int32
    assert r.scale == RatingScale(1, 5, 1)
    assert r.sources == [str(path)]
    assert r.skipped_lines == 0


def test_crlf_blank_lines_and_missing_final_newline(tmp_path: Path) -> None:
    plain = read_combined(write(tmp_path / "a.txt", COMBINED))
    messy_text = COMBINED.replace("\n", "\r\n").rstrip("\r\n").replace("2:\r\n", "\r\n2:\r\n\r\n")
    messy = read_combined(write(tmp_path / "b.txt", messy_text))
    for name in ("user_ids", "movie_ids", "ratings", "days"):
        assert np.array_equal(getattr(plain, name), getattr(messy, name))


def test_utf8_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    r = read_combined(write(tmp_path / "bom.txt", b"\xef\xbb\xbf" + COMBINED.encode()))
    assert len(r) == 6 and r.movie_ids[0] == 1


def test_dates_at_edges(tmp_path: Path) -> None:
    text = "7:\n1,1,1970-01-01\n2,2,1969-12-31\n3,3,2000-02-29\n4,4,2004-12-31\n5,5,9999-12-31\n"
    r = read_combined(write(tmp_path / "d.txt", text))
    assert r.days.tolist() == [0, -1, day("2000-02-29"), day("2004-12-31"), day("9999-12-31")]
    assert r.ratings.tolist() == [1, 2, 3, 4, 5]


def test_long_ids_and_leading_zeros(tmp_path: Path) -> None:
    text = "17770:\n0042,3,2005-01-01\n123456789012345678,4,2005-01-01\n9,5,2005-01-01\n"
    r = read_combined(write(tmp_path / "ids.txt", text))
    assert r.user_ids.tolist() == [42, 123456789012345678, 9]
    assert r.movie_ids.tolist() == [17770] * 3


def test_header_only_file_gives_no_ratings(tmp_path: Path) -> None:
    r = read_combined(write(tmp_path / "h.txt", "1:\n2:\n"))
    assert len(r) == 0


def test_chunked_threaded_parse_equals_single_chunk(tmp_path: Path) -> None:
    # Many small chunks (split inside movie groups) in 2 threads must give the same arrays.
    rng = np.random.default_rng(3)
    lines = []
    for movie in range(1, 60):
        lines.append(f"{movie}:")
        for _ in range(int(rng.integers(0, 40))):
            lines.append(f"{rng.integers(1, 10**7)},{rng.integers(1, 6)},2004-0{rng.integers(1, 10)}-1"
                         f"{rng.integers(0, 10)}")
    path = write(tmp_path / "many.txt", "\n".join(lines) + "\n")
    buf, begin = netflix._read_bytes(path)
    resets = np.array([begin], np.int64)
    whole = netflix._parse_buffer(buf, begin, netflix._RATING_ROW, resets, False, threads=1)
    for chunk_bytes in (1, 17, 64, 1000):
        parts = netflix._parse_buffer(
            buf, begin, netflix._RATING_ROW, resets, False, threads=2, chunk_bytes=chunk_bytes
        )
        assert parts.rows == whole.rows
        for a, b in zip(parts.columns.arrays(), whole.columns.arrays()):
            assert np.array_equal(a[: parts.rows], b[: whole.rows])


@st.composite
def rating_tables(draw: st.DrawFn) -> list[tuple[int, list[tuple[int, int, dt.date]]]]:
    movies = draw(st.lists(st.integers(1, 10**9), min_size=1, max_size=6, unique=True))
    row = st.tuples(
        st.integers(0, 10**12), st.integers(1, 5), st.dates(dt.date(1900, 1, 1), dt.date(2100, 1, 1))
    )
    return [(m, draw(st.lists(row, max_size=8))) for m in movies]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(table=rating_tables(), crlf=st.booleans(), final_newline=st.booleans())
def test_combined_round_trip(tmp_path: Path, table, crlf: bool, final_newline: bool) -> None:
    lines = []
    for movie, rows in table:
        lines.append(f"{movie}:")
        lines += [f"{u},{r},{d.isoformat()}" for u, r, d in rows]
    eol = "\r\n" if crlf else "\n"
    path = write(tmp_path / "rt.txt", eol.join(lines) + (eol if final_newline else ""))
    got = read_combined(path, threads=2)
    flat = [(m, u, r, (d - EPOCH).days) for m, rows in table for u, r, d in rows]
    assert got.movie_ids.tolist() == [f[0] for f in flat]
    assert got.user_ids.tolist() == [f[1] for f in flat]
    assert got.ratings.tolist() == [f[2] for f in flat]
    assert got.days.tolist() == [f[3] for f in flat]


# --------------------------------------------------------------------------------------------
# combined_data errors
# --------------------------------------------------------------------------------------------

BAD_ROWS = [
    ("1,3\n", "field"),  # too few fields
    ("1,3,2005-01-01,x\n", "field"),  # too many
    ("12a4,3,2005-01-01\n", "customer id"),
    (",3,2005-01-01\n", "customer id"),
    ("12,6,2005-01-01\n", "outside 1-5"),
    ("12,0,2005-01-01\n", "outside 1-5"),
    ("12,10,2005-01-01\n", "outside 1-5"),
    ("12,3.5,2005-01-01\n", "rating"),
    ("12,x,2005-01-01\n", "rating"),
    ("12,3,2005-13-01\n", "date"),
    ("12,3,2005-02-30\n", "date"),
    ("12,3,2005/01/01\n", "date"),
    ("12,3,05-01-01\n", "date"),
    ("12,3,0000-01-01\n", "date"),
    ("12, 3,2005-01-01\n", "rating"),
    ("1234567890123456789,3,2005-01-01\n", "customer id"),  # 19 digits
]


def test_training_set_round_trip_matches_combined(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    folder = tmp_path / "training_set"
    folder.mkdir()
    combined = []
    for movie in sorted(rng.choice(10**6, size=25, replace=False) + 1):
        rows = [f"{rng.integers(1, 3 * 10**6)},{rng.integers(1, 6)},2005-0{rng.integers(1, 10)}-2"
                f"{rng.integers(0, 9)}" for _ in range(int(rng.integers(1, 30)))]
        text = f"{movie}:\n" + "\n".join(rows) + "\n"
        write(folder / f"mv_{movie:07d}.txt", text)
        combined.append(text)
    a = read_training_set(folder, threads=2)
    b = read_combined(write(tmp_path / "c.txt", "".join(combined)))
    for name in ("user_ids", "movie_ids", "ratings", "days"):
        assert np.array_equal(getattr(a, name), getattr(b, name))


# A plain per-line Python reading of the combined format: the specification the vectorised
# parser must match, line for line, whatever the chunking.
_REF_ROW = re.compile(r"([0-9]{1,18}),([1-5]),([0-9]{4})-([0-9]{2})-([0-9]{2})")


def reference_parse(text: str) -> tuple[list[tuple[int, int, int, int]], int, int | None]:
    """(rows as (movie, user, stars, day), skipped lines, first bad 1-based line or None)."""
    rows, skipped, first_bad = [], 0, None
    movie: int | None = None  # None: no header yet; -1: bad header
    pieces = text.split("\n")
    if pieces and pieces[-1] == "":
        pieces.pop()
    for number, line in enumerate(pieces, start=1):
        line = line.removesuffix("\r")
        if not line:
            continue
        if line.endswith(":"):
            ok = re.fullmatch(r"[0-9]{1,18}", line[:-1]) is not None
            movie = int(line[:-1]) if ok else -1
            if not ok:
                skipped += 1
                first_bad = first_bad or number
            continue
        m = _REF_ROW.fullmatch(line)
        date = None
        if m:
            try:
                date = dt.date(int(m[3]), int(m[4]), int(m[5]))
            except ValueError:
                date = None
        if date is None or movie is None:
            first_bad = first_bad or number
        if date is None or movie is None or movie == -1:
            skipped += 1
            continue
        rows.append((movie, int(m[1]), int(m[2]), (date - EPOCH).days))
    return rows, skipped, first_bad


LINE_KINDS = st.one_of(
    st.builds(lambda m: f"{m}:", st.integers(0, 10**6)),
    st.builds(
        lambda u, r, d: f"{u},{r},{d.isoformat()}",
        st.integers(0, 10**9), st.integers(1, 5), st.dates(dt.date(1990, 1, 1), dt.date(2010, 1, 1)),
    ),
    st.sampled_from([b.rstrip("\n") for b, _ in BAD_ROWS] + ["x:", ":", "", "12:a"]),
)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(LINE_KINDS, min_size=1, max_size=40),
    crlf=st.booleans(),
    final_newline=st.booleans(),
    chunk_bytes=st.integers(1, 200),
)
def test_any_chunking_matches_the_reference(
    tmp_path: Path, lines: list[str], crlf: bool, final_newline: bool, chunk_bytes: int
) -> None:
    eol = "\r\n" if crlf else "\n"
    text = eol.join(lines) + (eol if final_newline else "")
    path = write(tmp_path / "any.txt", text)
    want_rows, want_skipped, want_bad = reference_parse(text)
    buf, begin = netflix._read_bytes(path) if text else (None, 0)
    if buf is None:
        return
    resets = np.array([begin], np.int64)
    got = netflix._parse_buffer(
        buf, begin, netflix._RATING_ROW, resets, True, threads=2, chunk_bytes=chunk_bytes
    )
    cols = got.columns
    assert got.skipped == want_skipped
    assert list(zip(cols.movie[: got.rows].tolist(), cols.user[: got.rows].tolist(),
                    cols.rating[: got.rows].astype(int).tolist(),
                    cols.days[: got.rows].tolist())) == want_rows
    if want_bad is None:
        netflix._parse_buffer(buf, begin, netflix._RATING_ROW, resets, False, 2, chunk_bytes)
    else:
        with pytest.raises(netflix._ParseFailure) as excinfo:
            netflix._parse_buffer(buf, begin, netflix._RATING_ROW, resets, False, 2, chunk_bytes)
        assert excinfo.value.bad.line + 1 == want_bad


@pytest.mark.parametrize(("bad_line", "reason"), BAD_ROWS)
def test_malformed_row_names_first_bad_line(tmp_path: Path, bad_line: str, reason: str) -> None:
    # The bad row is line 4; a second bad row later must not be the one reported.
    text = "1:\n5,3,2005-01-01\n2:\n" + bad_line + "6,4,2005-01-02\n" + bad_line
    path = write(tmp_path / "bad.txt", text)
    with pytest.raises(DataFormatError) as excinfo:
        read_combined(path)
    expect_error(excinfo, path, 4, reason)


@pytest.mark.parametrize(("bad_line", "_reason"), BAD_ROWS)
def test_skip_bad_lines_drops_and_counts(tmp_path: Path, bad_line: str, _reason: str) -> None:
    text = "1:\n5,3,2005-01-01\n2:\n" + bad_line + "6,4,2005-01-02\n" + bad_line
    r = read_combined(write(tmp_path / "bad.txt", text), skip_bad_lines=True)
    assert r.user_ids.tolist() == [5, 6]
    assert r.movie_ids.tolist() == [1, 2]
    assert r.skipped_lines == 2


def test_row_before_any_header(tmp_path: Path) -> None:
    path = write(tmp_path / "orphan.txt", "\n5,3,2005-01-01\n1:\n6,4,2005-01-02\n")
    with pytest.raises(DataFormatError) as excinfo:
        read_combined(path)
    expect_error(excinfo, path, 2, "before any")
    r = read_combined(path, skip_bad_lines=True)
    assert r.user_ids.tolist() == [6] and r.movie_ids.tolist() == [1] and r.skipped_lines == 1


@pytest.mark.parametrize("header", ["x1:", "1 2:", ":", "-3:"])
def test_non_numeric_movie_id(tmp_path: Path, header: str) -> None:
    path = write(tmp_path / "hdr.txt", f"1:\n5,3,2005-01-01\n{header}\n6,4,2005-01-02\n7:\n8,1,2005-01-03\n")
    with pytest.raises(DataFormatError) as excinfo:
        read_combined(path)
    expect_error(excinfo, path, 3, "movie")
    # Skipping drops the bad header and the rows under it, not the next movie's rows.
    r = read_combined(path, skip_bad_lines=True)
    assert r.user_ids.tolist() == [5, 8] and r.movie_ids.tolist() == [1, 7]
    assert r.skipped_lines == 2


def test_bad_lines_across_chunks_report_the_first(tmp_path: Path) -> None:
    good = "".join(f"{u},3,2005-01-01\n" for u in range(1, 200))
    text = "1:\n" + good + "2:\n" + good + "9,9,2005-01-01\n" + good + "x:\n"
    path = write(tmp_path / "big.txt", text)
    buf, begin = netflix._read_bytes(path)
    with pytest.raises(netflix._ParseFailure) as excinfo:
        netflix._parse_buffer(
            buf, begin, netflix._RATING_ROW, np.array([begin]), False, threads=2, chunk_bytes=100
        )
    assert excinfo.value.bad.line + 1 == 1 + 199 + 1 + 199 + 1
    with pytest.raises(DataFormatError) as err:
        read_combined(path)
    assert err.value.line == 401


def test_orphan_rows_continuing_across_a_chunk_boundary(tmp_path: Path) -> None:
    # Blank lines, then many rows with no header: the rows after a chunk boundary are orphans too.
    rows = "".join(f"{u},3,2005-01-01\n" for u in range(1, 100))
    path = write(tmp_path / "o.txt", "\n" * 50 + rows + "1:\n1,1,2005-01-01\n")
    buf, begin = netflix._read_bytes(path)
    with pytest.raises(netflix._ParseFailure) as excinfo:
        netflix._parse_buffer(
            buf, begin, netflix._RATING_ROW, np.array([begin]), False, threads=2, chunk_bytes=40
        )
    assert excinfo.value.bad.line + 1 == 51
    parsed = netflix._parse_buffer(
        buf, begin, netflix._RATING_ROW, np.array([begin]), True, threads=2, chunk_bytes=40
    )
    assert parsed.rows == 1 and parsed.skipped == 99


def test_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path / "empty.txt", b"")
    with pytest.raises(DataFormatError) as excinfo:
        read_combined(path)
    expect_error(excinfo, path, None, "empty")
    blank = write(tmp_path / "blank.txt", b"\n\r\n\n")
    with pytest.raises(DataFormatError) as excinfo:
        read_combined(blank)
    expect_error(excinfo, blank, None, "empty")


def test_truncated_final_line(tmp_path: Path) -> None:
    path = write(tmp_path / "trunc.txt", "1:\n5,3,2005-01-01\n123,4,2005-0")
    with pytest.raises(DataFormatError) as excinfo:
        read_combined(path)
    expect_error(excinfo, path, 3, "date", "truncated")
    r = read_combined(path, skip_bad_lines=True)
    assert r.user_ids.tolist() == [5] and r.skipped_lines == 1


def test_binary_garbage(tmp_path: Path) -> None:
    path = write(tmp_path / "garbage.txt", bytes(range(256)) * 4)
    with pytest.raises(DataFormatError) as excinfo:
        read_combined(path)
    assert excinfo.value.line == 1


# --------------------------------------------------------------------------------------------
# training_set folder
# --------------------------------------------------------------------------------------------


def test_training_set_equals_combined(tmp_path: Path) -> None:
    folder = tmp_path / "training_set"
    folder.mkdir()
    blocks = COMBINED.strip().split("\n")
    movies: dict[int, list[str]] = {}
    current = 0
    for line in blocks:
        if line.endswith(":"):
            current = int(line[:-1])
            movies[current] = []
        else:
            movies[current].append(line)
    for movie, rows in movies.items():
        text = f"{movie}:\n" + "\n".join(rows)
        if movie == 2:
            text = text.replace("\n", "\r\n")  # no final newline, CRLF: still fine
        else:
            text += "\n"
        write(folder / f"mv_{movie:07d}.txt", text)
    write(folder / "README", "not a rating file")
    combined = read_combined(write(tmp_path / "c.txt", COMBINED))
    training = read_training_set(folder)
    for name in ("user_ids", "movie_ids", "ratings", "days"):
        assert np.array_equal(getattr(training, name), getattr(combined, name))
    assert training.sources == [str(folder)]
    assert training.scale == RatingScale(1, 5, 1)


def test_training_set_errors_name_the_file_and_its_line(tmp_path: Path) -> None:
    folder = tmp_path / "training_set"
    folder.mkdir()
    write(folder / "mv_0000001.txt", "1:\n5,3,2005-01-01\n6,3,2005-01-01\n")
    bad = write(folder / "mv_0000002.txt", "2:\n5,3,2005-01-01\n7,7,2005-01-01\n")
    with pytest.raises(DataFormatError) as excinfo:
        read_training_set(folder)
    expect_error(excinfo, bad, 3, "outside 1-5")
    r = read_training_set(folder, skip_bad_lines=True)
    assert len(r) == 3 and r.skipped_lines == 1


def test_training_set_file_without_header(tmp_path: Path) -> None:
    # Each file must have its own header: rows must not inherit the previous file's movie.
    folder = tmp_path / "training_set"
    folder.mkdir()
    write(folder / "mv_0000001.txt", "1:\n5,3,2005-01-01\n")
    bad = write(folder / "mv_0000002.txt", "6,3,2005-01-01\n")
    with pytest.raises(DataFormatError) as excinfo:
        read_training_set(folder)
    expect_error(excinfo, bad, 1, "before any")
    r = read_training_set(folder, skip_bad_lines=True)
    assert r.user_ids.tolist() == [5] and r.skipped_lines == 1


@pytest.mark.parametrize("chunk_bytes", [1, 9, 30, 1 << 20])
def test_training_set_any_chunking(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk_bytes: int
) -> None:
    # File starts are "resets" wherever the chunk boundaries fall: a header-less file's rows
    # never inherit the previous file's movie, a good file after it reads normally.
    monkeypatch.setattr(netflix, "_CHUNK_BYTES", chunk_bytes)
    folder = tmp_path / "training_set"
    folder.mkdir()
    write(folder / "mv_0000001.txt", "1:\n5,3,2005-01-01\n6,2,2005-01-02\n")
    write(folder / "mv_0000002.txt", "\r\n7,3,2005-01-01\n8,3,2005-01-01\n")
    write(folder / "mv_0000003.txt", "3:\n9,1,2005-01-03")
    r = read_training_set(folder, skip_bad_lines=True, threads=2)
    assert r.user_ids.tolist() == [5, 6, 9]
    assert r.movie_ids.tolist() == [1, 1, 3]
    assert r.skipped_lines == 2
    with pytest.raises(DataFormatError) as excinfo:
        read_training_set(folder, threads=2)
    expect_error(excinfo, folder / "mv_0000002.txt", 2, "before any")


def test_training_set_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError) as excinfo:
        read_training_set(tmp_path)
    expect_error(excinfo, tmp_path, None, "mv_")
    empty = write(tmp_path / "mv_0000001.txt", b"")
    with pytest.raises(DataFormatError) as excinfo:
        read_training_set(tmp_path)
    expect_error(excinfo, empty, None, "empty")


# --------------------------------------------------------------------------------------------
# probe / qualifying
# --------------------------------------------------------------------------------------------


def test_read_probe(tmp_path: Path) -> None:
    path = write(tmp_path / "probe.txt", "1:\n30878\n2647871\r\n10:\n1952305\n")
    movies, users = read_probe(path)
    assert movies.tolist() == [1, 1, 10] and users.tolist() == [30878, 2647871, 1952305]
    assert movies.dtype == np.int64 and users.dtype == np.int64


def test_probe_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "probe.txt", "1:\n30878\n30878,3\n")
    with pytest.raises(DataFormatError) as excinfo:
        read_probe(path)
    expect_error(excinfo, path, 3, "CustomerID")
    orphan = write(tmp_path / "orphan.txt", "30878\n1:\n")
    with pytest.raises(DataFormatError) as excinfo:
        read_probe(orphan)
    expect_error(excinfo, orphan, 1, "before any")


def test_read_qualifying(tmp_path: Path) -> None:
    path = write(tmp_path / "qualifying.txt", "1:\n1046323,2005-12-19\n1080030,2005-12-23\n2:\n5,1999-11-11")
    movies, users, days = read_qualifying(path)
    assert movies.tolist() == [1, 1, 2] and users.tolist() == [1046323, 1080030, 5]
    assert days.tolist() == [day("2005-12-19"), day("2005-12-23"), day("1999-11-11")]
    assert days.dtype == np.int32


def test_qualifying_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "qualifying.txt", "1:\n1046323,2005-12-19\n1080030,3,2005-12-23\n")
    with pytest.raises(DataFormatError) as excinfo:
        read_qualifying(path)
    expect_error(excinfo, path, 3, "CustomerID,Date")
    bad_date = write(tmp_path / "q2.txt", "1:\n1046323,2005-12-32\n")
    with pytest.raises(DataFormatError) as excinfo:
        read_qualifying(bad_date)
    expect_error(excinfo, bad_date, 2, "date")
    empty = write(tmp_path / "q3.txt", b"")
    with pytest.raises(DataFormatError) as excinfo:
        read_qualifying(empty)
    expect_error(excinfo, empty, None, "empty")


# --------------------------------------------------------------------------------------------
# titles
# --------------------------------------------------------------------------------------------


def test_read_movie_titles(tmp_path: Path) -> None:
    raw = (
        b"1,2003,Dinosaur Planet\n"
        b"2,2004,Isle of Man TT 2004 Review\r\n"
        b"3,NULL,Character\n"
        b"\n"
        b"4,1997,Paula Abdul's Get Up & Dance\n"
        b"5,1991,The Rise and Fall of ECW, Part 1, Season 2\n"
        b"6,2000,Am\xe9lie\n"
    )
    t = read_movie_titles(write(tmp_path / "movie_titles.csv", raw))
    assert t.movie_ids.tolist() == [1, 2, 3, 4, 5, 6]
    assert t.years.tolist() == [2003, 2004, 0, 1997, 1991, 2000]
    assert t.titles == [
        "Dinosaur Planet",
        "Isle of Man TT 2004 Review",
        "Character",
        "Paula Abdul's Get Up & Dance",
        "The Rise and Fall of ECW, Part 1, Season 2",
        "Amélie",
    ]
    assert t.movie_ids.dtype == np.int64 and t.years.dtype == np.int32


def test_titles_kaggle_variants(tmp_path: Path) -> None:
    raw = (
        b"MovieID,YearOfRelease,Title\n"
        b'1,2003,"Dinosaur Planet, The",,,\n'
        b'2,2004,"He said ""hi""",\n'
        b"3,,Untitled,,\n"
        b"4,1999,Plain\n"
    )
    t = read_movie_titles(write(tmp_path / "movie_titles.csv", raw))
    assert t.movie_ids.tolist() == [1, 2, 3, 4]
    assert t.titles == ["Dinosaur Planet, The", 'He said "hi"', "Untitled", "Plain"]
    assert t.years.tolist() == [2003, 2004, 0, 1999]


def test_titles_utf8_copy_is_decoded_as_utf8(tmp_path: Path) -> None:
    t = read_movie_titles(write(tmp_path / "t.csv", "1,2001,Amélie\n".encode()))
    assert t.titles == ["Amélie"]


@pytest.mark.parametrize(
    ("raw", "line", "reason"),
    [
        (b"1,2003,Dinosaur Planet\n2,2004\n", 2, "3 comma-separated fields"),
        (b"1,2003,Dinosaur Planet\n\nx2,2004,Foo\n", 3, "movie id"),
        (b"1,2003,A\n2,20x4,B\n", 2, "year"),
        (b"1,2003,A\n2,2004,B\x00\x00\n", 2, "NUL"),
    ],
)
def test_titles_errors(tmp_path: Path, raw: bytes, line: int, reason: str) -> None:
    path = write(tmp_path / "movie_titles.txt", raw)
    with pytest.raises(DataFormatError) as excinfo:
        read_movie_titles(path)
    expect_error(excinfo, path, line, reason)


def test_titles_empty(tmp_path: Path) -> None:
    path = write(tmp_path / "movie_titles.txt", b"")
    with pytest.raises(DataFormatError) as excinfo:
        read_movie_titles(path)
    expect_error(excinfo, path, None, "empty")


# --------------------------------------------------------------------------------------------
# sniffers
# --------------------------------------------------------------------------------------------


def test_sniffers_tell_the_formats_apart(tmp_path: Path) -> None:
    files = {
        "combined": write(tmp_path / "combined.txt", COMBINED),
        "probe": write(tmp_path / "probe.txt", "1:\n30878\n2647871\n2:\n12\n"),
        "qualifying": write(tmp_path / "qualifying.txt", "1:\n1046323,2005-12-19\n"),
        "titles": write(tmp_path / "titles.csv", b"1,2003,Dinosaur Planet\n2,NULL,A, B\n"),
        "movielens": write(tmp_path / "u.data", "196\t242\t3\t881250949\n"),
        "empty": write(tmp_path / "empty.txt", b""),
    }
    sniffers = {
        "combined": looks_like_combined,
        "probe": looks_like_probe,
        "qualifying": looks_like_qualifying,
        "titles": looks_like_titles,
    }
    for kind, sniff in sniffers.items():
        for name, path in files.items():
            assert sniff(path) == (name == kind), (kind, name)
        assert not sniff(tmp_path / "missing.txt")
        assert not sniff(tmp_path)


def test_sniffer_reads_only_the_head(tmp_path: Path) -> None:
    # A big file whose tail is garbage still sniffs as combined (only the first KB are read),
    # and a head of one movie's rows (ID,1-digit,text) is not mistaken for titles.
    text = "1:\n" + "123456,3,2005-01-01\n" * 2000 + "garbage\n"
    path = write(tmp_path / "c.txt", text)
    assert looks_like_combined(path)
    assert not looks_like_titles(path)
    assert not looks_like_qualifying(path) and not looks_like_probe(path)


def test_titles_sniffer_accepts_a_column_header(tmp_path: Path) -> None:
    path = write(tmp_path / "t.csv", b"MovieID,YearOfRelease,Title\n1,2003,A, B\n2,NULL,C\n")
    assert looks_like_titles(path)


# --------------------------------------------------------------------------------------------
# Hostile input: folders, gzip, binary, and fuzzing against a token oracle
# --------------------------------------------------------------------------------------------


def test_folder_named_like_a_training_file_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "training_set"
    folder.mkdir()
    write(folder / "mv_0000001.txt", "1:\n5,3,2005-01-01\n")
    (folder / "mv_0000003.txt").mkdir()
    with pytest.raises(DataFormatError) as excinfo:
        read_training_set(folder)
    expect_error(excinfo, folder / "mv_0000003.txt", None, "is a folder")
    with pytest.raises(DataFormatError) as excinfo:
        read_combined(folder / "mv_0000003.txt")
    expect_error(excinfo, folder / "mv_0000003.txt", None, "is a folder")


def test_gzip_combined_and_titles_read_like_plain_files(tmp_path: Path) -> None:
    plain = read_combined(write(tmp_path / "combined_data_1.txt", COMBINED))
    packed = read_combined(
        write(tmp_path / "combined_data_1.txt.gz", gzip.compress(COMBINED.encode()))
    )
    for name in ("user_ids", "movie_ids", "ratings", "days"):
        assert np.array_equal(getattr(plain, name), getattr(packed, name))
    titles = write(tmp_path / "movie_titles.csv.gz", gzip.compress(b"1,2003,Dinosaur Planet\n"))
    assert read_movie_titles(titles).titles == ["Dinosaur Planet"]
    assert looks_like_combined(tmp_path / "combined_data_1.txt.gz")


def test_control_bytes_are_binary_data(tmp_path: Path) -> None:
    path = write(tmp_path / "combined_data_1.txt", bytes(range(1, 32)) * 40)
    with pytest.raises(DataFormatError) as excinfo:
        read_combined(path)
    expect_error(excinfo, path, None, "binary data")


_GOOD_IDS = st.one_of(
    st.integers(0, 10**18 - 1).map(lambda v: (str(v).encode(), v)),
    st.integers(0, 999).map(lambda v: (f"{v:04d}".encode(), v)),
)
_BAD_CUSTOMERS = [b"-1", b"a", b"", b"1e3", b" 5", b"10000000000000000000", b"0x5", b"\xff"]
_BAD_STARS = [b"0", b"6", b"a", b"", b"10", b"4.0", b" 4"]
_BAD_DATES = [b"2005-02-30", b"2005-02-29", b"0000-01-01", b"2005-13-01", b"2005-00-10",
              b"2005-01-32", b"2005-1-01", b"", b"20050101", b"2005/01/01", b"10000-01-01"]
_BAD_HEADERS = [b"a:", b":", b"-1:", b"1.5:", b"10000000000000000000:", b"0x1:", b" 1:"]
_BAD_SHAPES = [b"1,3", b"1,3,2005-01-01,7", b"1", b"1,,2005-01-01"]


@st.composite
def netflix_line(draw: st.DrawFn) -> tuple[bytes, str, tuple | int | None]:
    """(text, kind, value): kind is blank, header, bad_header, row or bad_row."""
    what = draw(st.integers(0, 19))
    if what == 0:
        return b"", "blank", None
    if what <= 3:
        if draw(st.integers(0, 3)) == 0:
            return draw(st.sampled_from(_BAD_HEADERS)), "bad_header", None
        text, movie = draw(_GOOD_IDS)
        return text + b":", "header", movie
    if what == 4:
        return draw(st.sampled_from(_BAD_SHAPES)), "bad_row", None
    bad = draw(st.integers(0, 5))
    cust = (draw(st.sampled_from(_BAD_CUSTOMERS)), None) if bad == 1 else draw(_GOOD_IDS)
    star = (draw(st.sampled_from(_BAD_STARS)) if bad == 2
            else str(draw(st.integers(1, 5))).encode())
    if bad == 3:
        date_text, days = draw(st.sampled_from(_BAD_DATES)), None
    else:
        d = draw(st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)))
        date_text, days = d.isoformat().encode(), (d - EPOCH).days
    text = b",".join([cust[0], star, date_text])
    if bad in (1, 2, 3):
        return text, "bad_row", None
    return text, "row", (cust[1], int(star), days)


def netflix_oracle(lines: list[tuple[bytes, str, object]]):
    """(first bad 1-based line or None, kept (user, movie, stars, days) rows under skip, number
    of lines skip mode counts)."""
    first_bad = None
    kept: list[tuple] = []
    skipped = 0
    movie: object = None  # None: no header yet; "bad": under a bad header
    for number, (_, kind, value) in enumerate(lines, start=1):
        if kind == "blank":
            continue
        if kind == "header":
            movie = value
            continue
        if kind == "bad_header":
            movie = "bad"
            skipped += 1
        elif kind == "row" and movie is not None and movie != "bad":
            user, stars, days = value
            kept.append((user, movie, stars, days))
            continue
        else:  # a bad row, a row before any header or under a bad header
            skipped += 1
        if first_bad is None and (kind != "row" or movie is None):
            first_bad = number
    return first_bad, kept, skipped


def _as_rows(r) -> list[tuple]:
    columns = (r.user_ids, r.movie_ids, r.ratings, r.days)
    return list(zip(*(c.tolist() for c in columns)))


def _check_netflix_ratings(r) -> None:
    if len(r):
        fz.check_ratings_valid(r)
    assert r.scale == RatingScale(1, 5, 1)


@settings(
    max_examples=fz.examples(100),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    lines=st.lists(netflix_line(), min_size=1, max_size=14),
    crlf=st.booleans(),
    final_newline=st.booleans(),
    skip=st.booleans(),
    compress=st.booleans(),
)
def test_fuzz_combined_reads_exactly_or_names_the_first_bad_line(
    tmp_path: Path, lines, crlf: bool, final_newline: bool, skip: bool, compress: bool
) -> None:
    eol = b"\r\n" if crlf else b"\n"
    data = eol.join(text for text, _, _ in lines) + (eol if final_newline else b"")
    path = fz.write_variant(tmp_path / "combined_data_1.txt", data, compress)
    first_bad, kept, skipped = netflix_oracle(lines)
    all_blank = all(kind == "blank" for _, kind, _ in lines)
    try:
        r = read_combined(path, skip_bad_lines=skip)
    except DataFormatError as exc:
        event("outcome: DataFormatError")
        assert exc.path == str(path)
        if all_blank:
            assert "empty" in exc.reason
        else:
            assert not skip and exc.line == first_bad, (exc, first_bad)
        return
    assert not all_blank
    assert skip or first_bad is None, f"line {first_bad} is bad but the file was read"
    event("outcome: read")
    _check_netflix_ratings(r)
    assert _as_rows(r) == kept
    assert r.skipped_lines == (skipped if skip else 0)


@settings(
    max_examples=fz.examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    files=st.lists(st.lists(netflix_line(), min_size=1, max_size=6), min_size=1, max_size=3),
    skip=st.booleans(),
)
def test_fuzz_training_set_reads_exactly_or_names_the_file_and_line(
    tmp_path: Path, files, skip: bool
) -> None:
    folder = Path(tempfile.mkdtemp(dir=tmp_path)) / "training_set"  # fresh for each example
    folder.mkdir()
    paths = []
    for k, lines in enumerate(files, start=1):
        text = b"\n".join(t for t, _, _ in lines) + b"\n"
        paths.append(write(folder / f"mv_{k:07d}.txt", text))
    oracles = [netflix_oracle(lines) for lines in files]
    try:
        r = read_training_set(folder, skip_bad_lines=skip)
    except DataFormatError as exc:
        event("outcome: DataFormatError")
        assert not skip, exc
        bad_file = next(k for k, (first_bad, _, _) in enumerate(oracles) if first_bad is not None)
        assert exc.path == str(paths[bad_file]) and exc.line == oracles[bad_file][0], exc
        return
    assert skip or all(first_bad is None for first_bad, _, _ in oracles)
    event("outcome: read")
    _check_netflix_ratings(r)
    assert _as_rows(r) == [row for _, kept, _ in oracles for row in kept]
    assert r.skipped_lines == (sum(s for _, _, s in oracles) if skip else 0)


@settings(
    max_examples=fz.examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    data=st.binary(max_size=200)
    | st.lists(
        st.sampled_from([b"1", b"23", b":", b",", b"\n", b"\r\n", b"-", b"2005-02-30",
                         b"2005-01-01", b"3", b"\x00", b"\xff", b" "]),
        max_size=50,
    ).map(b"".join),
    skip=st.booleans(),
)
def test_fuzz_combined_raw_bytes_never_crash_or_corrupt(
    tmp_path: Path, data: bytes, skip: bool
) -> None:
    path = write(tmp_path / "combined_data_1.txt", data)
    try:
        r = read_combined(path, skip_bad_lines=skip)
    except DataFormatError as exc:
        event("outcome: DataFormatError")
        assert exc.path == str(path)
        return
    event("outcome: read")
    _check_netflix_ratings(r)
