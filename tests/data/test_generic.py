"""Generic user,item,rating[,timestamp] files: delimiters, headers, dates, scales, errors."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aerec.data.errors import DataFormatError
from aerec.data.generic import collapse_whitespace, read_generic, sniff_delimiter
from aerec.data.ratings import RatingScale
from tests.data import fuzz_support as fz


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


# ----------------------------------------------------------------------------- values the store
#                                                                               cannot hold


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("100000", ["rating '100000' cannot be stored", "4–100000", "99,997 levels", "--scale"]),
        ("10000000000", ["rating '10000000000' is too large", "±10,000,000"]),
        ("16777217.5", ["too large"]),
        ("-70000", ["cannot be stored", "-70000–5", "70,006 levels"]),
    ],
)
def test_ratings_the_store_cannot_hold_name_file_and_line(tmp_path, value, words):
    path = write(tmp_path / "r.csv", f"user,item,rating\n1,10,4\n2,10,5\n4,10,{value}\n5,1,3\n")
    err = error_of(path)
    assert err.line == 4, str(err)
    for word in words:
        assert word in err.reason
    r = read_generic(path, skip_bad_lines=True)
    assert r.skipped_lines == 1 and r.ratings.tolist() == [4, 5, 3]
    assert r.scale == RatingScale(1, 5, 1)


def test_largest_storable_span_is_kept_exactly(tmp_path):
    path = write(tmp_path / "r.csv", "1,1,1\n1,2,65536\n2,1,30000\n")
    r = read_generic(path)
    assert r.scale == RatingScale(1, 65536, 1) and r.scale.storage_problem() is None
    assert r.scale.decode(r.scale.codes(r.ratings)).tolist() == [1, 65536, 30000]
    err = error_of(write(tmp_path / "r.csv", "1,1,1\n1,2,65537\n"))
    assert err.line == 2 and "65,537 levels" in err.reason


def test_values_float32_cannot_hold_at_the_step(tmp_path):
    # both values are on the scale, but float32 has no halves above 2**23
    path = write(tmp_path / "r.csv", "1,1,9000001\n1,2,9000001.5\n")
    err = error_of(path, scale=RatingScale(9000000, 9000010, 0.5))
    assert err.line == 2 and "cannot be stored exactly in steps of 0.5" in err.reason


def test_many_unstorable_ratings_are_skipped_one_by_one(tmp_path):
    lines = ["1,1,3"] + [f"{u},1,{100000 + u}" for u in range(2, 12)] + ["20,2,5"]
    r = read_generic(write(tmp_path / "r.csv", "\n".join(lines) + "\n"), skip_bad_lines=True)
    assert r.user_ids.tolist() == [1, 20] and r.skipped_lines == 10


# ----------------------------------------------------------------------------- dates: one rule


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("2005-02-30", ["timestamp '2005-02-30' is not a valid YYYY-MM-DD date"]),
        ("2005-02-29", ["not a valid YYYY-MM-DD date"]),  # 2005 is no leap year
        ("0000-01-01", ["not a valid YYYY-MM-DD date"]),  # pyarrow reads it as a date32
        ("2005-13-01", ["not a valid YYYY-MM-DD date"]),
        ("253402300800", ["outside the years 0001–9999"]),  # 10000-01-01T00:00:00
        ("-62135596801", ["outside the years 0001–9999"]),
    ],
)
def test_invalid_dates_are_refused_or_skipped(tmp_path, value, words):
    path = write(tmp_path / "r.csv", f"1,10,4,2004-02-29\n2,10,5,{value}\n3,10,1,1970-01-02\n")
    err = error_of(path)
    assert err.line == 2, str(err)
    for word in words:
        assert word in err.reason
    r = read_generic(path, skip_bad_lines=True)
    assert r.skipped_lines == 1 and r.days.tolist() == [12477, 1]


def test_every_date_only_file_takes_the_same_rule(tmp_path):
    # all dates well-formed: pyarrow's typed fast path reads them; year 0 must still be refused
    err = error_of(write(tmp_path / "r.csv", "1,10,4,0000-01-01\n2,10,5,2000-01-01\n"))
    assert err.line == 1 and "not a valid YYYY-MM-DD date" in err.reason
    r = read_generic(write(tmp_path / "r.csv", "1,10,4,0001-01-01\n2,10,5,9999-12-31\n"))
    assert r.days.tolist() == [-719162, 2932896]


# ----------------------------------------------------------------------------- ids


@pytest.mark.parametrize("value", ["0x10", "0X1F", "1000000000000000000", "-1"])
def test_ids_outside_the_decimal_grammar_are_refused(tmp_path, value):
    path = write(tmp_path / "r.csv", f"1,10,4\n2,{value},5\n")
    err = error_of(path)
    assert err.line == 2 and f"item id '{value}'" in err.reason


def test_minus_zero_id_is_zero_on_either_path(tmp_path):
    assert read_generic(write(tmp_path / "r.csv", "-0,10,4\n")).user_ids.tolist() == [0]
    r = read_generic(write(tmp_path / "r.csv", "-0,10,4\nx,1,1\n"), skip_bad_lines=True)
    assert r.user_ids.tolist() == [0]


# ----------------------------------------------------------------------------- gzip, binary,
#                                                                               encodings, folders


def test_gzip_input_reads_like_the_plain_file(tmp_path):
    text = "user item rating date\n1 10 4 2005-01-01\n2  20 4.5 2005-01-02\n"
    plain = read_generic(write(tmp_path / "r.txt", text))
    (tmp_path / "r.txt.gz").write_bytes(gzip.compress(text.encode()))
    packed = read_generic(tmp_path / "r.txt.gz")
    for a, b in zip(
        (plain.user_ids, plain.movie_ids, plain.ratings, plain.days),
        (packed.user_ids, packed.movie_ids, packed.ratings, packed.days),
    ):
        np.testing.assert_array_equal(a, b)
    (tmp_path / "bad.csv.gz").write_bytes(gzip.compress(b"1,10,4\n2,10,x\n"))
    err = error_of(tmp_path / "bad.csv.gz")
    assert err.line == 2 and "rating 'x'" in err.reason
    (tmp_path / "cut.csv.gz").write_bytes(gzip.compress(b"1,10,4\n" * 1000)[:40])
    err = error_of(tmp_path / "cut.csv.gz")
    assert "cannot" in err.reason and err.line is None


@pytest.mark.parametrize(
    "payload",
    [b"PK\x03\x04\x14\x00\x00\x00\x08\x00" + bytes(range(256)) * 8, bytes(range(1, 256)) * 8],
)
def test_binary_input_is_one_clear_error(tmp_path, payload):
    path = tmp_path / "r.csv"
    path.write_bytes(payload)
    err = error_of(path)
    assert "binary data" in err.reason


def test_invalid_utf8_on_a_bad_line_is_reported_cleanly(tmp_path, capfd):
    path = tmp_path / "r.csv"
    path.write_bytes(b"1,10,4\n\xff\xfe,1\n2,3,\xe9\n")
    err = error_of(path)
    assert err.line == 2 and "expected 3 comma-separated fields" in err.reason
    assert "ÿþ" in err.reason
    r = read_generic(path, skip_bad_lines=True)
    assert r.user_ids.tolist() == [1] and r.skipped_lines == 2
    captured = capfd.readouterr()
    assert "Exception ignored" not in captured.err and "UnicodeDecodeError" not in captured.err


def test_a_folder_or_device_instead_of_a_file(tmp_path):
    (tmp_path / "d.csv").mkdir()
    assert "is a folder" in error_of(tmp_path / "d.csv").reason
    with pytest.raises(DataFormatError) as info:
        read_generic("/dev/null")
    assert "not a regular file" in info.value.reason


# ----------------------------------------------------------------------------- fuzz


def _generic_fields(delimiter: bytes, with_time: bool):
    plain = delimiter != b" "
    fields = [
        fz.id_tokens(padded=plain, empty=plain),
        fz.id_tokens(padded=plain, empty=plain),
        fz.generic_rating_tokens(padded=plain, empty=plain),
    ]
    if with_time:
        fields.append(fz.seconds_tokens(empty=plain, dates_ok=True))
    return fields


@st.composite
def generic_files(draw):
    delimiter = draw(st.sampled_from([b",", b"\t", b";", b" "]))
    with_time = draw(st.booleans())
    names = [b"user", b"item", b"rating"] + ([b"time"] if with_time else [])
    built = draw(fz.delimited_file(_generic_fields(delimiter, with_time), delimiter,
                                   header=delimiter.join(names)))
    return built, ("user", "item", "rating", "time")[: len(names)]


@settings(
    max_examples=fz.examples(100),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=generic_files(), skip=st.booleans(), compress=st.booleans())
def test_fuzz_generic_reads_exactly_or_names_the_first_bad_line(tmp_path, case, skip, compress):
    built, fields = case
    path = fz.write_variant(tmp_path / "r.txt", built.data, compress)
    fz.check_delimited_outcome(read_generic, path, built, fields, skip)


@settings(
    max_examples=fz.examples(80),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    data=st.binary(max_size=300)
    | st.lists(st.sampled_from([b"1", b"23", b",", b"\t", b";", b" ", b"\n", b"\r\n", b"-", b".",
                                b"e9", b"x", b"\xff", b"\x00", b"2005-02-30", b"nan", b"99999",
                                b'"', b"user"]), max_size=60).map(b"".join),
    skip=st.booleans(),
)
def test_fuzz_generic_raw_bytes_never_crash_or_corrupt(tmp_path, data, skip):
    path = tmp_path / "r.csv"
    path.write_bytes(data)
    try:
        r = read_generic(path, skip_bad_lines=skip)
    except DataFormatError as exc:
        event("outcome: DataFormatError")
        assert exc.path == str(path)
        return
    event("outcome: read")
    fz.check_ratings_valid(r)
    packed = fz.write_variant(tmp_path / "r.csv.gz", data, True)
    again = read_generic(packed, skip_bad_lines=skip)
    np.testing.assert_array_equal(again.ratings, r.ratings)
    np.testing.assert_array_equal(again.user_ids, r.user_ids)
