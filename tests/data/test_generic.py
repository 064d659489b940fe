"""Generic user,item,rating[,timestamp] files: delimiters, headers, dates, scales, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aerec.data.errors import DataFormatError
from aerec.data.generic import collapse_whitespace, read_generic, sniff_delimiter
from aerec.data.ratings import RatingScale


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def error_of(path: Path, **kwargs) -> DataFormatError:
    with pytest.raises(DataFormatError) as info:
        read_generic(path, **kwargs)
    assert info.value.path == str(path)
    return info.value


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        ("1,10,4\n2,20,5\n", ","),
        ("user,item,rating\n1,10,4\n2,20,5\n", ","),
        ('"user","item","rating"\n"1","10","4"\n2,20,5\n', ","),
        ("1\t10\t4\n2\t20\t5\n", "\t"),
        ("u;i;r\n1;10;4\n2;20;5\n", ";"),
        ("  1   10 4  \n2\t20   5\n", " "),
        ("user item rating\n1 10 4\n2 20 5", " "),
    ],
)
def test_delimiters_and_headers(tmp_path, text, delimiter):
    path = write(tmp_path / "r.txt", text)
    assert sniff_delimiter(text.splitlines()[0]) == delimiter
    for given_delimiter in (None, delimiter):
        r = read_generic(path, delimiter=given_delimiter)
        assert r.user_ids.tolist() == [1, 2]
        assert r.movie_ids.tolist() == [10, 20]
        assert r.ratings.tolist() == [4, 5]
        assert r.days is None
        assert r.scale == RatingScale(1, 5, 1)
        assert r.sources == [str(path)]


def test_timestamps_seconds_and_iso_dates(tmp_path):
    path = write(tmp_path / "r.csv", "1,10,4,86400\n2,20,5,1970-01-03\n3,30,1,0\n")
    assert read_generic(path).days.tolist() == [1, 2, 0]
    path = write(tmp_path / "r.csv", "user,item,rating,date\n1,10,4,2005-12-31\n")
    assert read_generic(path).days.tolist() == [13148]  # days from 1970-01-01 to 2005-12-31


def test_inferred_and_given_scales(tmp_path):
    path = write(tmp_path / "r.csv", "1,1,1\n1,2,100\n2,1,55\n")
    assert read_generic(path).scale == RatingScale(1, 100, 1)
    path = write(tmp_path / "r.csv", "1,1,0.5\n1,2,4.5\n")
    assert read_generic(path).scale == RatingScale(0.5, 5, 0.5)
    scale = RatingScale(1, 10, 1)
    r = read_generic(path := write(tmp_path / "r.csv", "1,1,2\n1,2,3\n"), scale=scale)
    assert r.scale == scale
    path = write(tmp_path / "r.csv", "user,item,rating\n1,1,2\n1,2,11\n")
    err = error_of(path, scale=scale)
    assert err.line == 3 and "rating '11' is outside the scale 1–10" in err.reason
    assert str(err) == f"{path}:3: {err.reason}"


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("abc,10,4", ["user id 'abc'", "non-negative integer id"]),
        ("1,1.5,4", ["item id '1.5'"]),
        ("1,10", ["expected 3 comma-separated fields", "got '1,10'"]),
        ("1,10,4,5", ["expected 3 comma-separated fields"]),
        ("1,10,NaN", ["rating 'NaN'", "not a finite number"]),
        ("1,10,four", ["rating 'four'"]),
    ],
)
def test_bad_lines_name_file_line_and_reason(tmp_path, line, words):
    path = write(tmp_path / "r.csv", f"user,item,rating\n1,10,4\n\n{line}\n2,20,5\n")
    err = error_of(path)
    assert err.line == 4, str(err)
    for word in words:
        assert word in err.reason
    r = read_generic(path, skip_bad_lines=True)
    assert r.skipped_lines == 1 and r.user_ids.tolist() == [1, 2]


@pytest.mark.parametrize(
    ("value", "words"),
    [("2001-13-01", ["timestamp '2001-13-01'"]), ("01/02/2003", ["YYYY-MM-DD"]), ("", ["''"])],
)
def test_bad_timestamps(tmp_path, value, words):
    path = write(tmp_path / "r.tsv", f"1\t10\t4\t2001-01-01\n2\t20\t5\t{value}\n")
    err = error_of(path)
    assert err.line == 2
    for word in words:
        assert word in err.reason


def test_empty_header_only_and_shapeless_files(tmp_path):
    assert error_of(write(tmp_path / "a.csv", "")).reason == "empty file"
    err = error_of(write(tmp_path / "b.csv", "user,item,rating\n"))
    assert err.line == 1 and "no ratings after the header" in err.reason
    err = error_of(write(tmp_path / "c.csv", "1,2\n3,4\n"))
    assert err.line == 1 and "expected 3 or 4" in err.reason
    err = error_of(write(tmp_path / "d.csv", "12345\n"))
    assert err.line == 1 and "delimiter" in err.reason
    err = error_of(write(tmp_path / "e.csv", "1,2,x\n"), skip_bad_lines=True)
    assert "no valid ratings" in err.reason


def test_collapse_whitespace_keeps_lines():
    raw = b"  1 \t 2   3  \n\n\t4 5 6\r\n7 8 9"
    assert collapse_whitespace(raw) == b"1 2 3\n\n4 5 6\r\n7 8 9"
    assert collapse_whitespace(b"") == b""


def test_whitespace_file_line_numbers(tmp_path):
    path = write(tmp_path / "r.txt", "1  2  3\n\n   4   x  5 \n")
    err = error_of(path)
    assert err.line == 3 and "item id 'x'" in err.reason


# ----------------------------------------------------------------------------- round trip


@st.composite
def generic_rows(draw):
    n = draw(st.integers(1, 30))
    users = np.array(draw(st.lists(st.integers(0, 2**40), min_size=n, max_size=n)), np.int64)
    items = np.array(draw(st.lists(st.integers(0, 2**40), min_size=n, max_size=n)), np.int64)
    scale = draw(st.sampled_from([(1, 5, 1), (0.5, 5, 0.5), (1, 100, 1), (1, 10, 1)]))
    lo, hi, step = scale
    levels = round((hi - lo) / step)
    steps = draw(st.lists(st.integers(0, levels), min_size=n, max_size=n))
    ratings = lo + step * np.array(steps, np.float64)
    days = draw(st.one_of(st.none(), st.lists(st.integers(0, 40_000), min_size=n, max_size=n)))
    return users, items, ratings, None if days is None else np.array(days, np.int64)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    rows=generic_rows(),
    delimiter=st.sampled_from([",", "\t", ";", " "]),
    header=st.booleans(),
    iso_dates=st.booleans(),
)
def test_round_trip(tmp_path, rows, delimiter, header, iso_dates):
    users, items, ratings, days = rows
    columns = [users.astype(str), items.astype(str), np.char.mod("%g", ratings)]
    names = ["user", "item", "rating"]
    if days is not None:
        if iso_dates:
            stamps = (np.datetime64("1970-01-01") + days.astype("timedelta64[D]")).astype(str)
        else:
            stamps = (days * 86400 + 3600).astype(str)
        columns.append(stamps)
        names.append("timestamp")
    lines = [delimiter.join(fields) for fields in zip(*columns)]
    if header:
        lines.insert(0, delimiter.join(names))
    path = write(tmp_path / "r.txt", "\n".join(lines) + "\n")
    r = read_generic(path)
    np.testing.assert_array_equal(r.user_ids, users)
    np.testing.assert_array_equal(r.movie_ids, items)
    np.testing.assert_array_equal(r.ratings, ratings.astype(np.float32))
    if days is None:
        assert r.days is None
    else:
        np.testing.assert_array_equal(r.days, days)
    assert not r.scale.invalid_mask(ratings).any()
