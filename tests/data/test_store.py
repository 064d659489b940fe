"""The prepared store: CSR layout, id maps, atomic writes, duplicates, fixed test splits."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from aerec.data.errors import DataFormatError
from aerec.data.ratings import NO_DATE, Ratings, RatingScale, Titles
from aerec.data.store import load_dataset, write_prepared


def _ratings(n: int = 500, seed: int = 0, users: int = 60, movies: int = 40) -> Ratings:
    rng = np.random.default_rng(seed)
    keys = rng.choice(users * movies, size=n, replace=False)
    u, m = keys // movies, keys % movies
    # sparse, unsorted raw ids, as in Netflix
    return Ratings(
        user_ids=u * 1000 + 7,
        movie_ids=m * 3 + 1,
        ratings=rng.integers(1, 6, n),
        days=rng.integers(10_000, 13_000, n),
        scale=RatingScale(1, 5, 1),
        sources=["mem"],
    )


def test_round_trip_matches_input(tmp_path):
    r = _ratings()
    # movie 10_000 has no ratings: its title must not add a column (movie_titles.csv lists all
    # 17,770 Netflix movies even when one combined_data file is prepared)
    titles = Titles(np.array([1, 4, 10_000]), ["Matrix, The", "Amélie", "Unrated"],
                    np.array([1999, 0, 2001]))
    report = write_prepared(tmp_path / "ds", r, titles=titles)
    ds = load_dataset(tmp_path / "ds")
    assert (report.users, report.movies, report.ratings) == (ds.n_users, ds.n_movies, len(r))
    coo = ds.matrix.tocoo()
    got = set(zip(ds.user_ids[coo.row].tolist(), ds.movie_ids[coo.col].tolist(), coo.data.tolist()))
    want = set(zip(r.user_ids.tolist(), r.movie_ids.tolist(), r.ratings.tolist()))
    assert got == want
    # days follow their ratings through the CSR permutation
    key = dict(zip(zip(r.user_ids.tolist(), r.movie_ids.tolist()), r.days.tolist()))
    days = np.asarray(ds.days)
    for i in range(0, coo.nnz, 37):
        assert days[i] == key[(int(ds.user_ids[coo.row[i]]), int(ds.movie_ids[coo.col[i]]))]
    assert np.all(np.diff(ds.user_ids) > 0) and np.all(np.diff(ds.movie_ids) > 0)
    assert ds.matrix.indices.dtype == np.int32 and ds.matrix.has_sorted_indices
    col = int(np.searchsorted(ds.movie_ids, 1))
    assert ds.titles[col] == "Matrix, The" and ds.years[col] == 1999
    assert ds.n_movies == len(np.unique(r.movie_ids)) and "Unrated" not in ds.titles
    assert ds.arrays.codes.dtype == np.uint8
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["ratings"] == len(r) and manifest["scale"] == {"min": 1, "max": 5, "step": 1}


def test_half_star_and_hundred_point_scales(tmp_path):
    r = _ratings()
    half = Ratings(r.user_ids, r.movie_ids, r.ratings / 2 + 0.5 * (r.ratings % 2 == 0), r.days)
    write_prepared(tmp_path / "half", half)
    ds = load_dataset(tmp_path / "half")
    assert ds.scale == RatingScale(0.5, 5, 0.5)
    np.testing.assert_array_equal(np.sort(ds.matrix.data), np.sort(half.ratings))
    hundred = Ratings(r.user_ids, r.movie_ids, (r.ratings * 19).astype(float), None)
    write_prepared(tmp_path / "h", hundred)
    ds = load_dataset(tmp_path / "h")
    assert ds.scale == RatingScale(1, 100, 1) and ds.days is None
    np.testing.assert_array_equal(np.sort(ds.matrix.data), np.sort(hundred.ratings))


def test_duplicate_pairs_error_names_the_pair(tmp_path):
    r = _ratings(50)
    dup = Ratings(
        np.r_[r.user_ids, r.user_ids[3]], np.r_[r.movie_ids, r.movie_ids[3]],
        np.r_[r.ratings, 2], np.r_[r.days, r.days[3]], r.scale, ["x.txt"],
    )
    with pytest.raises(DataFormatError, match=rf"x.txt: 1 duplicate .*user {r.user_ids[3]}"):
        write_prepared(tmp_path / "ds", dup)
    assert not (tmp_path / "ds").exists()
    assert not list(tmp_path.iterdir()), "no temporary leftovers"
    report = write_prepared(tmp_path / "ds", dup, skip_bad_lines=True)
    assert report.duplicates_dropped == 1 and report.ratings == 50


def test_out_of_scale_rating_rejected(tmp_path):
    r = _ratings(30)
    r.ratings[5] = 6
    with pytest.raises(DataFormatError, match="outside the scale 1–5"):
        write_prepared(tmp_path / "ds", r)


def test_refuses_to_overwrite_without_force(tmp_path):
    write_prepared(tmp_path / "ds", _ratings(30))
    with pytest.raises(FileExistsError, match="--force"):
        write_prepared(tmp_path / "ds", _ratings(40))
    write_prepared(tmp_path / "ds", _ratings(40), overwrite=True)
    assert load_dataset(tmp_path / "ds").n_ratings == 40
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_fixed_test_split_shares_id_maps(tmp_path):
    r = _ratings(400)
    train = Ratings(r.user_ids[:300], r.movie_ids[:300], r.ratings[:300], r.days[:300], r.scale)
    test = Ratings(r.user_ids[300:], r.movie_ids[300:], r.ratings[300:], None, r.scale)
    write_prepared(tmp_path / "ds", train, test=test)
    ds = load_dataset(tmp_path / "ds")
    assert ds.matrix.nnz == 300 and ds.test_matrix.nnz == 100 and ds.n_ratings == 400
    assert ds.test_matrix.shape == ds.matrix.shape
    assert ds.matrix.multiply(ds.test_matrix).nnz == 0
    overlapping = Ratings(r.user_ids[:10], r.movie_ids[:10], r.ratings[:10], None, r.scale)
    with pytest.raises(DataFormatError, match="both the ratings and the test split"):
        write_prepared(tmp_path / "bad", train, test=overlapping)


def test_missing_dates_kept_as_no_date(tmp_path):
    r = _ratings(20)
    r.days[:5] = NO_DATE
    write_prepared(tmp_path / "ds", r)
    assert (np.asarray(load_dataset(tmp_path / "ds").days) == NO_DATE).sum() == 5


def test_load_rejects_non_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a prepared dataset"):
        load_dataset(tmp_path)


# ----------------------------------------------------------------------------- nothing left behind


def _dead_pid() -> int:
    """The PID of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _siblings(folder, name: str = "ds") -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{name}."))


def test_force_onto_a_plain_file_leaves_no_copy(tmp_path):
    (tmp_path / "ds").write_text("not a dataset")
    write_prepared(tmp_path / "ds", _ratings(30), overwrite=True)
    assert load_dataset(tmp_path / "ds").n_ratings == 30
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_leftovers_of_killed_writers_are_cleaned_and_live_ones_kept(tmp_path):
    dead = _dead_pid()
    write_prepared(tmp_path / "ds", _ratings(30))
    for name in (f".ds.tmp-{dead}-0123abcd", f".ds.old-{dead}-89abcdef", f".ds.old-{dead}"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "indices.npy").write_bytes(b"x" * 1000)
    (tmp_path / f".ds.old-{dead}-00000001").write_text("a replaced plain file")
    live = tmp_path / f".ds.tmp-{os.getpid()}-feedf00d"  # a writer still running: ours
    live.mkdir()
    other = tmp_path / f".other.tmp-{dead}-0123abcd"  # another output's: not ours to judge
    other.mkdir()
    write_prepared(tmp_path / "ds", _ratings(40), overwrite=True)
    assert load_dataset(tmp_path / "ds").n_ratings == 40
    assert _siblings(tmp_path) == [live.name]
    assert other.is_dir()


def test_previous_dataset_moved_aside_by_a_killed_writer_is_put_back(tmp_path):
    write_prepared(tmp_path / "ds", _ratings(30))
    os.replace(tmp_path / "ds", tmp_path / f".ds.old-{_dead_pid()}-0123abcd")  # killed here
    with pytest.raises(FileExistsError):  # the previous dataset is back, so --force is needed
        write_prepared(tmp_path / "ds", _ratings(40))
    assert load_dataset(tmp_path / "ds").n_ratings == 30
    assert _siblings(tmp_path) == []


def test_ratings_of_several_sources_that_no_stored_scale_holds(tmp_path):
    a = Ratings([1, 2], [1, 1], [4, 5], scale=RatingScale(4, 5, 1), sources=["a.csv"])
    b = Ratings([3], [1], [100000], scale=RatingScale(100000, 100001, 1), sources=["b.csv"])
    expected = "scale 4–100000 .step 1., which cannot be stored: it has 99,997 levels"
    with pytest.raises(DataFormatError, match=expected) as info:
        write_prepared(tmp_path / "ds", Ratings.concat([a, b]))
    assert info.value.path == "a.csv, b.csv"
    assert not (tmp_path / "ds").exists() and _siblings(tmp_path) == []


@pytest.mark.parametrize("relation", ["is", "contains", "lies inside"])
def test_out_overlapping_a_source_is_refused_even_with_overwrite(tmp_path, relation):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "r.csv").write_text("1,1,4\n")
    source, out = {
        "is": (folder, folder),
        "contains": (folder / "r.csv", folder),
        "lies inside": (folder, folder / "ds"),
    }[relation]
    r = _ratings(30)
    r.sources = [str(source)]
    with pytest.raises(ValueError, match=f"--out {out} {relation} the input {source}"):
        write_prepared(out, r, overwrite=True)
    assert (folder / "r.csv").read_text() == "1,1,4\n"



def test_repr_is_one_short_line_not_the_arrays(tmp_path):
    write_prepared(tmp_path / "ds", _ratings(n=500))
    ds = load_dataset(tmp_path / "ds")
    shown = repr(ds)
    assert shown == str(ds) and "\n" not in shown
    cells = ds.n_users * ds.n_movies
    assert shown == (f"PreparedDataset({str(tmp_path / 'ds')!r}: {ds.n_users} users × "
                     f"{ds.n_movies} movies, 500 ratings, sparsity {500 / cells:.4g})")
    r = _ratings(400)
    train = Ratings(r.user_ids[:300], r.movie_ids[:300], r.ratings[:300], r.days[:300], r.scale)
    test = Ratings(r.user_ids[300:], r.movie_ids[300:], r.ratings[300:], None, r.scale)
    write_prepared(tmp_path / "fixed", train, test=test)
    fixed = load_dataset(tmp_path / "fixed")
    cells = fixed.n_users * fixed.n_movies
    assert repr(fixed).endswith(  # ratings and sparsity count the test split too
        f", 400 ratings, sparsity {400 / cells:.4g}, 100 in the fixed test split)")
