"""The synthetic Netflix-format generator: exact counts, the Kaggle layout, determinism,
realistic shape, and a ground truth that matches the files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aerec.data import synth
from aerec.data.netflix import read_combined, read_movie_titles
from aerec.data.synth import (
    PRESETS,
    STAR_SHARES,
    load_ground_truth,
    synthesize,
)

ROW = re.compile(rb"^([1-9][0-9]*),([1-5]),(\d{4}-\d\d-\d\d)$")
HEADER = re.compile(rb"^([1-9][0-9]*):$")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> synth.SynthSummary:
    return synthesize(tmp_path_factory.mktemp("tiny") / "data", **PRESETS["tiny"], seed=7)


@pytest.fixture(scope="module")
def medium(tmp_path_factory: pytest.TempPathFactory) -> synth.SynthSummary:
    """50k ratings: enough for distribution checks, still well under a second."""
    out = tmp_path_factory.mktemp("medium") / "data"
    return synthesize(out, users=2_000, movies=400, ratings=50_000, seed=3)


def _pairs(ratings) -> np.ndarray:
    return ratings.user_ids * 10**6 + ratings.movie_ids


def test_presets_have_the_netflix_quarter_shape() -> None:
    assert PRESETS["netflix-quarter"] == {"users": 470_758, "movies": 4_499, "ratings": 24_053_764}
    for preset in PRESETS.values():
        assert preset["ratings"] <= preset["users"] * preset["movies"]


def test_exact_counts_and_no_duplicates(tiny: synth.SynthSummary) -> None:
    r = read_combined(tiny.out_dir / "combined_data_1.txt")
    size = PRESETS["tiny"]
    assert (tiny.users, tiny.movies, tiny.ratings) == (size["users"], size["movies"],
                                                       size["ratings"])
    assert len(r) == size["ratings"]
    assert len(np.unique(r.user_ids)) == size["users"]
    assert np.array_equal(np.unique(r.movie_ids), np.arange(1, size["movies"] + 1))
    assert len(np.unique(_pairs(r))) == len(r), "a (user, movie) pair repeats"
    assert r.user_ids.min() >= 1 and r.user_ids.max() <= synth.MAX_CUSTOMER_ID
    assert set(np.unique(r.ratings)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert sorted(p.name for p in tiny.files) == sorted(p.name for p in tiny.out_dir.iterdir())


def test_combined_file_is_exactly_the_kaggle_layout(tiny: synth.SynthSummary) -> None:
    raw = (tiny.out_dir / "combined_data_1.txt").read_bytes()
    assert raw.endswith(b"\n") and b"\r" not in raw
    headers, days = [], []
    rows_under_header = 0
    for line in raw[:-1].split(b"\n"):  # a test may loop; the generator never does
        head = HEADER.match(line)
        if head:
            assert not headers or rows_under_header > 0, "a movie header without ratings"
            headers.append(int(head.group(1)))
            rows_under_header = 0
            continue
        row = ROW.match(line)
        assert row, f"not a Kaggle rating row: {line!r}"
        assert headers, "a rating row before the first MovieID: header"
        days.append(np.datetime64(row.group(3).decode(), "D"))
        rows_under_header += 1
    assert headers == list(range(1, PRESETS["tiny"]["movies"] + 1))
    dates = np.array(days)
    assert dates.min() >= np.datetime64("1999-11-11") and dates.max() <= np.datetime64("2005-12-31")
    # Netflix's ratings pile up late: most are from the last two years.
    assert np.mean(dates >= np.datetime64("2004-01-01")) > 0.5


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    kwargs = {"users": 150, "movies": 60, "ratings": 2_000}
    a = synthesize(tmp_path / "a", **kwargs, seed=11)
    b = synthesize(tmp_path / "b", **kwargs, seed=11)
    c = synthesize(tmp_path / "c", **kwargs, seed=12)
    for name in ("combined_data_1.txt", "movie_titles.csv", "ground_truth.npz", "synth.json",
                 "README.txt"):
        assert (a.out_dir / name).read_bytes() == (b.out_dir / name).read_bytes(), name
    assert (a.out_dir / "combined_data_1.txt").read_bytes() != (
        c.out_dir / "combined_data_1.txt"
    ).read_bytes()
    assert a.noise_floor_rmse == b.noise_floor_rmse


def test_star_distribution_matches_netflix(medium: synth.SynthSummary) -> None:
    r = read_combined(medium.out_dir / "combined_data_1.txt")
    shares = np.bincount(r.ratings.astype(int), minlength=6)[1:] / len(r)
    assert np.all(np.abs(shares - np.array(STAR_SHARES)) < 0.03), shares


def test_popularity_and_activity_are_skewed(medium: synth.SynthSummary) -> None:
    r = read_combined(medium.out_dir / "combined_data_1.txt")
    per_movie = np.sort(np.unique(r.movie_ids, return_counts=True)[1])[::-1]
    top_tenth = per_movie[: len(per_movie) // 10].sum() / per_movie.sum()
    assert top_tenth > 0.3, f"top 10% of movies hold only {top_tenth:.0%} of ratings"
    per_user = np.unique(r.user_ids, return_counts=True)[1]
    assert per_user.min() >= 1 and per_movie.min() >= 1
    assert np.median(per_user) < per_user.mean()  # long right tail: most users rate few
    assert per_user.max() >= 8 * np.median(per_user)


def test_ground_truth_aligns_with_the_file(tiny: synth.SynthSummary) -> None:
    r = read_combined(tiny.out_dir / "combined_data_1.txt")
    gt = load_ground_truth(tiny.out_dir)
    assert gt.seed == 7
    assert len(gt.expected) == len(gt.stars) == len(gt.rating_user_index) == len(r)
    # rows are in file order
    assert np.array_equal(gt.user_ids[gt.rating_user_index], r.user_ids)
    assert np.array_equal(gt.movie_ids[gt.rating_movie_index], r.movie_ids)
    assert np.array_equal(gt.stars, r.ratings.astype(np.int8))
    assert np.all(np.diff(gt.user_ids) > 0), "user index is ascending raw id order"
    # the stored expectations are the closed form, for observed pairs and any other pair
    np.testing.assert_allclose(gt.expected_rating(r.user_ids, r.movie_ids), gt.expected,
                               atol=1e-5)
    assert np.all((gt.expected > 1.0) & (gt.expected < 5.0))
    noise_floor = np.sqrt(np.mean((gt.stars - gt.expected.astype(np.float64)) ** 2))
    assert noise_floor == pytest.approx(gt.noise_floor_rmse, rel=1e-6)
    assert tiny.noise_floor_rmse == pytest.approx(gt.noise_floor_rmse)
    assert gt.user_factors.shape == (tiny.users, gt.group_centroids.shape[1])
    params = json.loads((tiny.out_dir / "synth.json").read_text())
    assert (params["users"], params["movies"], params["ratings"], params["seed"]) == (
        tiny.users, tiny.movies, tiny.ratings, 7)
    with pytest.raises(KeyError):
        gt.expected_rating(np.array([0]), np.array([1]))


def test_structure_is_learnable(medium: synth.SynthSummary) -> None:
    """The noise floor sits well below the trivial baselines, and taste groups are real."""
    gt = load_ground_truth(medium.out_dir)
    stars = gt.stars.astype(np.float64)
    global_rmse = np.sqrt(np.mean((stars - stars.mean()) ** 2))
    assert gt.global_mean_rmse == pytest.approx(global_rmse, rel=1e-6)
    assert gt.noise_floor_rmse < global_rmse - 0.15
    assert 0.75 < gt.noise_floor_rmse < 0.9
    movie = gt.rating_movie_index
    movie_mean = np.bincount(movie, stars) / np.bincount(movie)
    movie_mean_rmse = np.sqrt(np.mean((stars - movie_mean[movie]) ** 2))
    assert gt.noise_floor_rmse < movie_mean_rmse - 0.1  # users' tastes matter beyond the movie
    # users of one group agree more with each other than with other groups
    users = np.arange(len(gt.user_ids))
    movies = np.arange(len(gt.movie_ids))
    uu, mm = np.meshgrid(users[:200], movies, indexing="ij")
    taste = gt.latent_mean(uu.ravel(), mm.ravel()).reshape(uu.shape)
    taste = taste - gt.user_bias[:200, None] - gt.movie_bias[None, :]
    corr = np.corrcoef(taste)
    same = gt.user_group[:200, None] == gt.user_group[None, :200]
    off_diagonal = ~np.eye(200, dtype=bool)
    assert corr[same & off_diagonal].mean() > corr[~same].mean() + 0.3


def test_titles_are_latin1_with_commas_accents_and_null_years(tiny: synth.SynthSummary) -> None:
    raw = (tiny.out_dir / "movie_titles.csv").read_bytes()
    text = raw.decode("latin-1")
    lines = text.rstrip("\n").split("\n")
    assert len(lines) == tiny.movies
    ids, years, titles = zip(*(line.split(",", 2) for line in lines))
    assert [int(i) for i in ids] == list(range(1, tiny.movies + 1))
    assert "NULL" in years
    assert all(y == "NULL" or 1920 <= int(y) <= 2005 for y in years)
    assert any("," in t for t in titles)
    assert any(any(ord(ch) > 127 for ch in t) for t in titles)
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")  # really latin-1, not UTF-8
    read = read_movie_titles(tiny.out_dir / "movie_titles.csv")
    assert list(read.titles) == list(titles)
    assert np.sum(read.years == 0) == years.count("NULL")


def test_refuses_to_overwrite_and_replaces_atomically(tmp_path: Path) -> None:
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError):
        synthesize(out, users=20, movies=10, ratings=100)
    assert (out / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"], "a temp dir was left behind"

    summary = synthesize(out, users=20, movies=10, ratings=100, overwrite=True)
    assert not (out / "keep.txt").exists()
    assert (out / "combined_data_1.txt").is_file() and summary.out_dir == out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]

    empty = tmp_path / "empty"
    empty.mkdir()
    synthesize(empty, users=20, movies=10, ratings=100)  # an empty directory is fine
    assert (empty / "ground_truth.npz").is_file()


def test_failure_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(synth, "_write_titles", broken)
    with pytest.raises(OSError, match="disk full"):
        synthesize(tmp_path / "data", users=20, movies=10, ratings=100)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("users", "movies", "ratings"),
    [
        (20, 10, 200),  # dense: every pair rated
        (5, 40, 40),  # every movie exactly once
        (40, 5, 40),  # every user exactly once
        (1, 1, 1),
        (300, 2_000, 3_000),  # many movies, few ratings: unrated movies get swapped in
    ],
)
def test_extreme_shapes_are_exact(tmp_path: Path, users: int, movies: int, ratings: int) -> None:
    summary = synthesize(tmp_path / "d", users=users, movies=movies, ratings=ratings, seed=1)
    r = read_combined(summary.out_dir / "combined_data_1.txt")
    assert len(r) == ratings
    assert len(np.unique(r.user_ids)) == users
    assert len(np.unique(r.movie_ids)) == movies
    assert len(np.unique(_pairs(r))) == ratings


@pytest.mark.parametrize(
    ("users", "movies", "ratings"),
    [(10, 10, 5), (10, 10, 101), (0, 10, 10), (synth.MAX_CUSTOMER_ID + 1, 1, 10**7)],
)
def test_impossible_sizes_are_refused(tmp_path: Path, users: int, movies: int,
                                      ratings: int) -> None:
    with pytest.raises(ValueError):
        synthesize(tmp_path / "d", users=users, movies=movies, ratings=ratings)
    assert not (tmp_path / "d").exists()


def test_leftovers_of_a_killed_run_are_cleaned_and_force_keeps_no_copy(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()  # proc.pid now names no running process
    out = tmp_path / "data"
    stale_tmp = tmp_path / f".data.tmp-{proc.pid}-0123abcd"
    stale_old = tmp_path / f".data.old-{proc.pid}-89abcdef"
    for stale in (stale_tmp, stale_old):
        stale.mkdir()
        (stale / "combined_data_1.txt").write_text("1:\n")
    # out is missing: the stale old copy is what a killed --force run moved aside — put back
    with pytest.raises(FileExistsError):
        synthesize(out, users=20, movies=10, ratings=100)
    assert (out / "combined_data_1.txt").read_text() == "1:\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    synthesize(out, users=20, movies=10, ratings=100, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    assert len(read_combined(out / "combined_data_1.txt")) == 100
