"""MovieLens readers: every release's rating and title files, their errors, sniffers, real data."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aerec.data.errors import DataFormatError
from aerec.data.movielens import (
    looks_like_ml100k,
    looks_like_ml_csv,
    looks_like_ml_dat,
    read_ml100k_items,
    read_ml100k_ratings,
    read_ml_csv_movies,
    read_ml_csv_ratings,
    read_ml_dat_movies,
    read_ml_dat_ratings,
    titles_path_for,
)
from aerec.data.ratings import RatingScale
from tests.data import fuzz_support as fz


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def raises_at(path: Path, line: int | None, *words: str):
    """Context manager: DataFormatError naming ``path`` and ``line`` whose reason has ``words``."""

    class _Check:
        def __enter__(self):
            self.ctx = pytest.raises(DataFormatError)
            self.info = self.ctx.__enter__()
            return self.info

        def __exit__(self, *exc):
            swallowed = self.ctx.__exit__(*exc)
            err = self.info.value
            assert err.path == str(path)
            assert err.line == line, str(err)
            message = str(err)
            assert message.startswith(f"{path}:{line}: " if line is not None else f"{path}: ")
            for word in words:
                assert word in err.reason, message
            return swallowed

    return _Check()


# ----------------------------------------------------------------------------- u.data


def test_ml100k_ratings_columns_and_days(tmp_path):
    path = write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t5\t86400\n")
    r = read_ml100k_ratings(path)
    assert r.user_ids.tolist() == [196, 186]
    assert r.movie_ids.tolist() == [242, 302]
    assert r.ratings.tolist() == [3.0, 5.0]
    assert r.days.tolist() == [881250949 // 86400, 1]
    assert r.scale == RatingScale(1, 5, 1)
    assert r.sources == [str(path)] and r.skipped_lines == 0


def test_ml100k_blank_lines_and_crlf_are_fine(tmp_path):
    path = write(tmp_path / "u.data", "1\t2\t3\t4\r\n\r\n5\t6\t1\t8\r\n\n")
    r = read_ml100k_ratings(path)
    assert r.user_ids.tolist() == [1, 5] and r.ratings.tolist() == [3, 1]


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("7\t8\t3", ["expected 4 tab-separated fields", "got '7\\t8\\t3'"]),
        ("7\t8\t3\t4\t5", ["expected 4 tab-separated fields"]),
        ("x\t8\t3\t4", ["user id 'x'", "non-negative integer id"]),
        ("7\t-8\t3\t4", ["movie id '-8'"]),
        ("7\t8\t6\t4", ["rating '6'", "outside the scale 1–5"]),
        ("7\t8\t0\t4", ["rating '0'", "outside the scale"]),
        ("7\t8\t3.5\t4", ["rating '3.5'", "outside the scale"]),
        ("7\t8\tnan\t4", ["rating 'nan'", "not a finite number"]),
        ("7\t8\tinf\t4", ["rating 'inf'", "not a finite number"]),
        ("7\t8\t\t4", ["rating ''", "not a finite number"]),
        ("7\t8\t3\tyesterday", ["timestamp 'yesterday'", "unix seconds"]),
        ("7\t8\t3\t1.5", ["timestamp '1.5'"]),
    ],
)
def test_ml100k_bad_line_is_named(tmp_path, line, words):
    # Blank line 2 still counts as a physical line, so the bad one is line 4.
    path = write(tmp_path / "u.data", f"1\t2\t3\t4\n\n1\t3\t4\t5\n{line}\n9\t9\t1\t1\n")
    with raises_at(path, 4, *words):
        read_ml100k_ratings(path)
    r = read_ml100k_ratings(path, skip_bad_lines=True)
    assert r.skipped_lines == 1
    assert r.user_ids.tolist() == [1, 1, 9]


def test_first_offending_line_wins_whatever_the_kind(tmp_path):
    # A value error (line 3) before a field-count error (line 5), and the reverse.
    path = write(tmp_path / "a.data", "1\t2\t3\t4\n1\t2\t3\t4\n1\t2\t9\t4\n1\t2\t3\t4\n1\t2\n")
    with raises_at(path, 3, "rating '9'"):
        read_ml100k_ratings(path)
    path = write(tmp_path / "b.data", "1\t2\t3\t4\n1\t2\n1\t2\t3\t4\n1\tx\t3\t4\n")
    with raises_at(path, 2, "expected 4"):
        read_ml100k_ratings(path)
    r = read_ml100k_ratings(path, skip_bad_lines=True)
    assert r.skipped_lines == 2 and len(r) == 2


def test_bad_line_deep_in_a_multi_block_file(tmp_path):
    # Far past pyarrow's first block, after several earlier bad lines and blank lines.
    n = 120_000
    rows = np.char.add(np.arange(n).astype(str), "\t5\t4\t881250949")
    rows[[10, 50_000]] = ""  # blank lines
    rows[20] = "1\t2\t3"  # field count
    rows[70_000] = "1\t2\t3\t4\t5"
    rows[100_000] = "1\t2\t7\t4"  # off scale
    rows[110_000] = "1\tz\t3\t4"
    path = write(tmp_path / "u.data", "\n".join(rows) + "\n")
    with raises_at(path, 21, "expected 4"):
        read_ml100k_ratings(path)
    r = read_ml100k_ratings(path, skip_bad_lines=True)
    assert r.skipped_lines == 4 and len(r) == n - 6
    # Without the early field-count error the first one is the off-scale rating.
    rows[20] = "20\t5\t4\t881250949"
    rows[70_000] = "70000\t5\t4\t881250949"
    path = write(tmp_path / "u.data", "\n".join(rows) + "\n")
    with raises_at(path, 100_001, "rating '7'"):
        read_ml100k_ratings(path)


def test_empty_files(tmp_path):
    for text in ["", "\n\n  \n"]:
        path = write(tmp_path / "u.data", text)
        with raises_at(path, None, "empty file"):
            read_ml100k_ratings(path)
    path = write(tmp_path / "u.data", "1\t2\n")
    with raises_at(path, 1, "expected 4"):
        read_ml100k_ratings(path)
    with raises_at(path, None, "no valid ratings", "1 bad lines skipped"):
        read_ml100k_ratings(path, skip_bad_lines=True)


def test_missing_file_is_an_os_error_not_a_format_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_ml100k_ratings(tmp_path / "u.data")
    with pytest.raises(FileNotFoundError):
        read_ml_dat_movies(tmp_path / "movies.dat")


# ----------------------------------------------------------------------------- ratings.dat


def test_ml_dat_ratings_whole_stars_are_1m(tmp_path):
    path = write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    r = read_ml_dat_ratings(path)
    assert r.user_ids.tolist() == [1, 1] and r.movie_ids.tolist() == [1193, 661]
    assert r.ratings.tolist() == [5, 3] and r.scale == RatingScale(1, 5, 1)
    assert r.days.tolist() == [978300760 // 86400, 978302109 // 86400]


def test_ml_dat_ratings_half_stars_are_10m(tmp_path):
    path = write(tmp_path / "ratings.dat", "1::122::5::838985046\n2::185::0.5::838983525\n")
    r = read_ml_dat_ratings(path)
    assert r.ratings.tolist() == [5.0, 0.5] and r.scale == RatingScale(0.5, 5, 0.5)


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("3::4::5", ["expected UserID::MovieID::Rating::Timestamp", "got '3::4::5'"]),
        ("3:4::5::6", ["expected UserID::MovieID::Rating::Timestamp"]),
        ("3:x:4::5::6", ["expected UserID::MovieID::Rating::Timestamp", "'3:x:4::5::6'"]),
        ("3::4::5::6::7", ["expected UserID"]),
        ("3::four::5::6", ["movie id 'four'"]),
        ("3::4::7::6", ["rating '7'", "outside the scale 1–5"]),
        ("3::4::5::-", ["timestamp '-'"]),
    ],
)
def test_ml_dat_bad_line_is_named(tmp_path, line, words):
    path = write(tmp_path / "ratings.dat", f"1::2::3::4\n{line}\n")
    with raises_at(path, 2, *words):
        read_ml_dat_ratings(path)


# ----------------------------------------------------------------------------- ratings.csv


def test_ml_csv_ratings_with_header(tmp_path):
    path = write(
        tmp_path / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,0.5,964981247\n",
    )
    r = read_ml_csv_ratings(path)
    assert r.user_ids.tolist() == [1, 1] and r.movie_ids.tolist() == [1, 3]
    assert r.ratings.tolist() == [4.0, 0.5] and r.scale == RatingScale(0.5, 5, 0.5)
    assert r.days.tolist() == [964982703 // 86400, 964981247 // 86400]


def test_ml_csv_ratings_with_bom_and_without_header(tmp_path):
    path = write(tmp_path / "ratings.csv", "\ufeffuserId,movieId,rating,timestamp\n1,2,2.5,0\n")
    assert read_ml_csv_ratings(path).ratings.tolist() == [2.5]
    path = write(tmp_path / "ratings.csv", "1,2,2.5,0\n3,4,5,86400\n")
    r = read_ml_csv_ratings(path)
    assert r.user_ids.tolist() == [1, 3] and r.days.tolist() == [0, 1]


def test_ml_csv_line_numbers_count_the_header(tmp_path):
    path = write(
        tmp_path / "ratings.csv",
        "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n1,3,5.5,964981247\n",
    )
    with raises_at(path, 3, "rating '5.5'", "outside the scale 0.5–5 in steps of 0.5"):
        read_ml_csv_ratings(path)
    path = write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,1,4.0\n")
    with raises_at(path, 2, "expected 4 comma-separated fields"):
        read_ml_csv_ratings(path)
    path = write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n")
    with raises_at(path, None, "no ratings"):
        read_ml_csv_ratings(path)


# ----------------------------------------------------------------------------- titles


def test_u_item_titles_years_and_genres(tmp_path):
    flags = "|".join(["0"] * 16)
    write(
        tmp_path / "u.item",
        f"1|Toy Story (1995)|01-Jan-1995||http://x|0|0|1|{flags}\n"
        f"267|unknown||||1|0|0|{flags}\n"
        f"1412|Land Before Time III (1995) (V)|01-Jan-1995||http://y|0|1|1|{flags}\n"
        f"1128|Heidi Fleiss: Hollywood Madam (1995) |09-Feb-1996||u|0|0|0|{flags}\n"
        f"5|Caf\xe9 au lait (1994)|01-Jan-1994||u|0|0|0|{flags}\n",
        encoding="latin-1",
    )
    t = read_ml100k_items(tmp_path / "u.item")
    assert t.movie_ids.tolist() == [1, 267, 1412, 1128, 5]
    assert t.titles == [
        "Toy Story (1995)",
        "unknown",
        "Land Before Time III (1995) (V)",  # year from the release date
        "Heidi Fleiss: Hollywood Madam (1995)",
        "Café au lait (1994)",  # latin-1 decoded
    ]
    assert t.years.tolist() == [1995, 0, 1995, 1995, 1994]
    assert t.genres is None  # no u.genre beside it
    names = ["unknown", "Action", "Adventure"] + [f"G{i}" for i in range(16)]
    write(tmp_path / "u.genre", "".join(f"{n}|{i}\n" for i, n in enumerate(names)) + "\n")
    t = read_ml100k_items(tmp_path / "u.item")
    assert t.genres == ["Adventure", "unknown", "Action|Adventure", "", ""]


def test_u_item_errors(tmp_path):
    path = write(tmp_path / "u.item", "1|A (1995)|||u|0|1\n2|B (1996)|||u|0\nx|C|||u|0|0\n")
    with raises_at(path, 2, "expected 7 '|'-separated fields"):
        read_ml100k_items(path)
    path = write(tmp_path / "u.item", "1|A (1995)|||u|0|1\nx|C|||u|0|0\n")
    with raises_at(path, 2, "movie id 'x'"):
        read_ml100k_items(path)
    write(tmp_path / "u.genre", "a|0\nb|1\nc|2\n")
    path = write(tmp_path / "u.item", "1|A (1995)|||u|0|1\n")
    with raises_at(tmp_path / "u.genre", None, "3 genres", "2 genre flags"):
        read_ml100k_items(path)


def test_movies_dat_titles_with_colons_latin1_and_utf8(tmp_path):
    text = (
        "1::Toy Story (1995)::Animation|Children's|Comedy\n"
        "260::Star Wars: Episode IV - A New Hope (1977)::Action|Sci-Fi\n"
        "\n"
        "73::Misérables, Les (1995)::Drama|War\n"
    )
    for encoding in ("latin-1", "utf-8"):
        t = read_ml_dat_movies(write(tmp_path / "movies.dat", text, encoding))
        assert t.movie_ids.tolist() == [1, 260, 73]
        assert t.titles[1] == "Star Wars: Episode IV - A New Hope (1977)"
        assert t.titles[2] == "Misérables, Les (1995)"
        assert t.years.tolist() == [1995, 1977, 1995]
        assert t.genres == ["Animation|Children's|Comedy", "Action|Sci-Fi", "Drama|War"]


def test_movies_dat_errors(tmp_path):
    path = write(tmp_path / "movies.dat", "1::A (1995)::Drama\n\n2::B (1996)\n")
    with raises_at(path, 3, "expected MovieID::Title::Genres", "'2::B (1996)'"):
        read_ml_dat_movies(path)
    path = write(tmp_path / "movies.dat", "1::A (1995)::Drama\nB::B (1996)::Drama\n")
    with raises_at(path, 2, "movie id 'B'"):
        read_ml_dat_movies(path)
    path = write(tmp_path / "movies.dat", "\n")
    with raises_at(path, None, "empty file"):
        read_ml_dat_movies(path)


def test_movies_csv_quoted_titles_and_odd_years(tmp_path):
    path = write(
        tmp_path / "movies.csv",
        "movieId,title,genres\n"
        '11,"American President, The (1995)",Comedy|Drama|Romance\n'
        '7789,"11\'09""01 - September 11 (2002)",Drama\n'
        "171749,Death Note: Desu nôto (2006–2007),(no genres listed)\n"
        "26701,Runaway Brain (1995) ,Animation\n"
        "40697,Babylon 5,Sci-Fi\n",
    )
    t = read_ml_csv_movies(path)
    assert t.movie_ids.tolist() == [11, 7789, 171749, 26701, 40697]
    assert t.titles == [
        "American President, The (1995)",
        "11'09\"01 - September 11 (2002)",
        "Death Note: Desu nôto (2006–2007)",
        "Runaway Brain (1995)",
        "Babylon 5",
    ]
    assert t.years.tolist() == [1995, 2002, 2006, 1995, 0]
    assert t.genres[0] == "Comedy|Drama|Romance" and t.genres[2] == "(no genres listed)"


def test_movies_csv_errors(tmp_path):
    path = write(tmp_path / "movies.csv", "movieId,title,genres\n1,A,Drama\n2,B\n")
    with raises_at(path, 3, "expected 3 comma-separated fields"):
        read_ml_csv_movies(path)
    path = write(tmp_path / "movies.csv", "movieId,title,genres\n1,A,Drama\nX,B,Drama\n")
    with raises_at(path, 3, "movie id 'X'"):
        read_ml_csv_movies(path)


# ----------------------------------------------------------------------------- sniffers


def test_sniffers_and_companion_titles(tmp_path):
    u = write(tmp_path / "u1.base", "1\t2\t3\t881250949\n")
    dat = write(tmp_path / "ratings.dat", "1::2::3::978300760\n")
    csv = write(tmp_path / "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3.5,9\n")
    other = write(tmp_path / "mine.csv", "user,item,rating\n1,2,3\n")
    assert [looks_like_ml100k(p) for p in (u, dat, csv, other)] == [True, False, False, False]
    assert [looks_like_ml_dat(p) for p in (u, dat, csv, other)] == [False, True, False, False]
    assert [looks_like_ml_csv(p) for p in (u, dat, csv, other)] == [False, False, True, False]
    assert not looks_like_ml100k(tmp_path / "missing") and not looks_like_ml_dat(tmp_path)
    assert titles_path_for(u) is None  # no u.item yet
    for name in ("u.item", "movies.dat", "movies.csv"):
        write(tmp_path / name, "")
    assert titles_path_for(u) == tmp_path / "u.item"
    assert titles_path_for(dat) == tmp_path / "movies.dat"
    assert titles_path_for(csv) == tmp_path / "movies.csv"
    assert titles_path_for(other) is None


def test_sniffers_read_only_the_head(tmp_path):
    # A huge file whose head is right: the sniffer answers from the first 4 KB.
    line = "1\t2\t3\t881250949\n"
    path = write(tmp_path / "u.data", line * 1000 + "garbage\n")
    assert looks_like_ml100k(path)


# ----------------------------------------------------------------------------- round trip

ids = st.integers(1, 2**40)


@st.composite
def rating_rows(draw, half_stars: bool):
    n = draw(st.integers(1, 30))
    steps = draw(st.lists(st.integers(1, 10 if half_stars else 5), min_size=n, max_size=n))
    ratings = np.array(steps, np.float64) / (2 if half_stars else 1)
    users = np.array(draw(st.lists(ids, min_size=n, max_size=n)), np.int64)
    movies = np.array(draw(st.lists(ids, min_size=n, max_size=n)), np.int64)
    seconds = np.array(draw(st.lists(st.integers(0, 2**31), min_size=n, max_size=n)), np.int64)
    return users, movies, ratings, seconds


def _check(r, users, movies, ratings, seconds):
    np.testing.assert_array_equal(r.user_ids, users)
    np.testing.assert_array_equal(r.movie_ids, movies)
    np.testing.assert_array_equal(r.ratings, ratings.astype(np.float32))
    np.testing.assert_array_equal(r.days, seconds // 86400)


def _lines(sep, *cols, fmt_rating=lambda x: f"{x:g}"):
    users, movies, ratings, seconds = cols
    return [
        sep.join([str(u), str(m), fmt_rating(x), str(s)])
        for u, m, x, s in zip(users, movies, ratings, seconds)
    ]


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=rating_rows(half_stars=False), crlf=st.booleans())
def test_round_trip_u_data_and_1m_dat(tmp_path, rows, crlf):
    eol = "\r\n" if crlf else "\n"
    u = write(tmp_path / "u.data", eol.join(_lines("\t", *rows)) + eol)
    _check(read_ml100k_ratings(u), *rows)
    dat = write(tmp_path / "ratings.dat", eol.join(_lines("::", *rows)))
    r = read_ml_dat_ratings(dat)
    _check(r, *rows)
    assert r.scale == RatingScale(1, 5, 1)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=rating_rows(half_stars=True))
def test_round_trip_10m_dat_and_ratings_csv(tmp_path, rows):
    dat = write(tmp_path / "ratings.dat", "\n".join(_lines("::", *rows)) + "\n")
    r = read_ml_dat_ratings(dat)
    _check(r, *rows)
    halves = bool(np.any(rows[2] != np.round(rows[2])))
    assert r.scale == (RatingScale(0.5, 5, 0.5) if halves else RatingScale(1, 5, 1))
    header = "userId,movieId,rating,timestamp\n"
    csv = write(
        tmp_path / "ratings.csv",
        header + "\n".join(_lines(",", *rows, fmt_rating=lambda x: f"{x:.1f}")) + "\n",
    )
    _check(read_ml_csv_ratings(csv), *rows)


# ----------------------------------------------------------------------------- real data


def test_real_ml100k(ml100k_dir):
    r = read_ml100k_ratings(ml100k_dir / "u.data")
    assert len(r) == 100_000
    assert len(np.unique(r.user_ids)) == 943 and len(np.unique(r.movie_ids)) == 1682
    assert r.scale == RatingScale(1, 5, 1) and set(np.unique(r.ratings)) == {1, 2, 3, 4, 5}
    # First line of u.data: 196 242 3 881250949.
    assert (r.user_ids[0], r.movie_ids[0], r.ratings[0]) == (196, 242, 3)
    assert r.days[0] == 881250949 // 86400
    assert len(read_ml100k_ratings(ml100k_dir / "u1.base")) == 80_000
    assert len(read_ml100k_ratings(ml100k_dir / "u1.test")) == 20_000
    t = read_ml100k_items(ml100k_dir / "u.item")
    assert len(t) == 1682
    first = int(np.flatnonzero(t.movie_ids == 1)[0])
    assert t.titles[first] == "Toy Story (1995)" and t.years[first] == 1995
    assert t.genres[first] == "Animation|Children's|Comedy"
    assert looks_like_ml100k(ml100k_dir / "u.data")
    assert titles_path_for(ml100k_dir / "u1.base") == ml100k_dir / "u.item"


def test_real_ml_latest_small(ml_latest_small_dir):
    r = read_ml_csv_ratings(ml_latest_small_dir / "ratings.csv")
    assert len(r) == 100_836 and r.scale == RatingScale(0.5, 5, 0.5)
    assert len(np.unique(r.user_ids)) == 610 and len(np.unique(r.movie_ids)) == 9724
    assert 0.5 in r.ratings and 3.5 in r.ratings
    # First data line: 1,1,4.0,964982703.
    assert (r.user_ids[0], r.movie_ids[0], r.ratings[0]) == (1, 1, 4.0)
    t = read_ml_csv_movies(ml_latest_small_dir / "movies.csv")
    assert len(t) == 9742
    by_id = dict(zip(t.movie_ids.tolist(), range(len(t))))
    # Line 12 of movies.csv: 11,"American President, The (1995)",Comedy|Drama|Romance
    assert t.titles[by_id[11]] == "American President, The (1995)" and t.years[by_id[11]] == 1995
    assert t.genres[by_id[11]] == "Comedy|Drama|Romance"
    assert t.titles[by_id[1]] == "Toy Story (1995)"
    assert looks_like_ml_csv(ml_latest_small_dir / "ratings.csv")
    assert (
        titles_path_for(ml_latest_small_dir / "ratings.csv") == ml_latest_small_dir / "movies.csv"
    )


# ----------------------------------------------------------------------------- hostile input


def test_gzip_ratings_and_titles_read_like_plain_files(tmp_path):
    text = "1\t10\t4\t881250949\n2\t20\t5\t881250950\n"
    plain = read_ml100k_ratings(write(tmp_path / "u.data", text))
    (tmp_path / "u.data.gz").write_bytes(gzip.compress(text.encode()))
    packed = read_ml100k_ratings(tmp_path / "u.data.gz")
    np.testing.assert_array_equal(plain.ratings, packed.ratings)
    np.testing.assert_array_equal(plain.days, packed.days)
    movies = "movieId,title,genres\n1,Toy Story (1995),Animation\n"
    (tmp_path / "movies.csv.gz").write_bytes(gzip.compress(movies.encode()))
    assert read_ml_csv_movies(tmp_path / "movies.csv.gz").titles == ["Toy Story (1995)"]


def test_binary_and_invalid_utf8_rating_files(tmp_path, capfd):
    path = tmp_path / "ratings.dat"
    path.write_bytes(bytes(range(256)) * 4)
    with raises_at(path, 1, "binary data"):
        read_ml_dat_ratings(path)
    path = tmp_path / "u.data"
    path.write_bytes(b"1\t10\t4\t5\n\xff\xfe\t1\n")
    with raises_at(path, 2, "expected 4 tab-separated fields"):
        read_ml100k_ratings(path)
    assert "Exception ignored" not in capfd.readouterr().err


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("1\t10\t4\t253402300800", ["outside the years 0001–9999"]),
        ("1\t10\t4\t0x10", ["timestamp '0x10'"]),
        ("1\t0x10\t4\t5", ["movie id '0x10'"]),
    ],
)
def test_timestamps_and_ids_outside_the_one_rule(tmp_path, line, words):
    path = write(tmp_path / "u.data", f"2\t20\t5\t881250950\n{line}\n")
    with raises_at(path, 2, *words):
        read_ml100k_ratings(path)


@st.composite
def ml_files(draw):
    kind = draw(st.sampled_from(["u.data", "ratings.dat", "ratings.csv"]))
    delimiter, header, half = {
        "u.data": (b"\t", None, False),
        "ratings.dat": (b"::", None, True),
        "ratings.csv": (b",", b"userId,movieId,rating,timestamp", True),
    }[kind]
    padded = kind != "ratings.dat"
    fields = [
        fz.id_tokens(padded=padded, empty=True),
        fz.id_tokens(padded=padded, empty=True),
        fz.star_tokens(half=half, empty=True),
        fz.seconds_tokens(empty=True, dates_ok=False),
    ]
    return kind, draw(fz.delimited_file(fields, delimiter, header=header))


_ML_READERS = {
    "u.data": read_ml100k_ratings,
    "ratings.dat": read_ml_dat_ratings,
    "ratings.csv": read_ml_csv_ratings,
}


@settings(
    max_examples=fz.examples(100),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(case=ml_files(), skip=st.booleans(), compress=st.booleans())
def test_fuzz_ml_ratings_read_exactly_or_name_the_first_bad_line(tmp_path, case, skip, compress):
    kind, built = case
    path = fz.write_variant(tmp_path / kind, built.data, compress)
    fz.check_delimited_outcome(
        _ML_READERS[kind], path, built, ("user", "item", "rating", "time"), skip
    )


@settings(
    max_examples=fz.examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    kind=st.sampled_from(sorted(_ML_READERS)),
    data=st.lists(
        st.sampled_from([b"1", b"5", b"12", b"\t", b"::", b":", b",", b"\n", b"\r\n", b".5", b"-",
                         b"e9", b"x", b"\xff", b"\x00", b"nan", b"99999999999", b'"',
                         b"userId,movieId,rating,timestamp\n"]),
        max_size=60,
    ).map(b"".join),
    skip=st.booleans(),
)
def test_fuzz_ml_raw_bytes_never_crash_or_corrupt(tmp_path, kind, data, skip):
    path = tmp_path / kind
    path.write_bytes(data)
    try:
        r = _ML_READERS[kind](path, skip_bad_lines=skip)
    except DataFormatError as exc:
        event("outcome: DataFormatError")
        assert exc.path == str(path)
        return
    event("outcome: read")
    fz.check_ratings_valid(r)
