"""prepare_paths: format detection, companion titles, fixed test splits (file and probe),
and all-or-nothing output — on hand-made fixtures and on the real MovieLens data."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from aerec.data.errors import DataFormatError
from aerec.data.info import dataset_stats
from aerec.data.prepare import detect, prepare_paths
from aerec.data.splits import make_splits
from aerec.data.store import load_dataset

COMBINED = "1:\n11,3,2005-09-06\n12,5,2005-05-13\n13,4,2005-10-19\n2:\n11,4,2005-09-05\n14,1,2004-01-01\n"
TITLES = "1,2003,Dinosaur Planet\n2,NULL,Matrix, The\n3,1999,Unrated, Elsewhere\n"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("latin-1"))
    return path


def test_kaggle_layout_with_titles_found_beside(tmp_path):
    src = write(tmp_path / "nf" / "combined_data_1.txt", COMBINED)
    write(tmp_path / "nf" / "movie_titles.csv", TITLES)
    found = detect([src])
    assert found.fmt == "netflix" and found.titles == tmp_path / "nf" / "movie_titles.csv"
    report = prepare_paths([src], tmp_path / "ds")
    ds = load_dataset(tmp_path / "ds")
    assert (report.users, report.movies, report.ratings) == (4, 2, 5)
    assert ds.titles == ["Dinosaur Planet", "Matrix, The"] and ds.years.tolist() == [2003, 0]
    assert ds.manifest["input_format"] == "netflix" and ds.manifest["sources"][0]["sha256"]
    # the folder stands for its files
    prepare_paths([tmp_path / "nf"], tmp_path / "ds2")
    assert load_dataset(tmp_path / "ds2").n_ratings == 5


def test_several_combined_files_concatenate(tmp_path):
    a = write(tmp_path / "combined_data_1.txt", COMBINED)
    b = write(tmp_path / "combined_data_2.txt", "3:\n11,2,2005-01-01\n15,5,2005-01-02\n")
    prepare_paths([a, b], tmp_path / "ds")
    s = dataset_stats(load_dataset(tmp_path / "ds"))
    assert (s["users"], s["movies"], s["ratings"]) == (5, 3, 7)


def test_training_set_with_probe_becomes_fixed_test(tmp_path):
    ts = tmp_path / "training_set"
    write(ts / "mv_0000001.txt", "1:\n11,3,2005-09-06\n12,5,2005-05-13\n13,4,2005-10-19\n")
    write(ts / "mv_0000002.txt", "2:\n11,4,2005-09-05\n14,1,2004-01-01\n")
    probe = write(tmp_path / "probe.txt", "1:\n12\n2:\n14\n")
    prepare_paths([ts, probe], tmp_path / "ds")
    ds = load_dataset(tmp_path / "ds")
    assert ds.matrix.nnz == 3 and ds.test_matrix.nnz == 2
    assert ds.manifest["test_kind"] == "probe"
    s = make_splits(ds, "probe")
    coo = s.test.tocoo()
    pairs = {(int(ds.user_ids[r]), int(ds.movie_ids[c]), float(v))
             for r, c, v in zip(coo.row, coo.col, coo.data)}
    assert pairs == {(12, 1, 5.0), (14, 2, 1.0)}
    bad_probe = write(tmp_path / "bad_probe.txt", "1:\n99\n")
    with pytest.raises(DataFormatError, match="no rating in the training data"):
        prepare_paths([ts], tmp_path / "ds3", test=bad_probe)
    assert not (tmp_path / "ds3").exists()


def test_generic_csv_with_hundred_point_scale(tmp_path):
    src = write(tmp_path / "scores.csv", "user,item,rating\n1,10,95\n1,11,40\n2,10,1\n3,12,100\n")
    prepare_paths([src], tmp_path / "ds")
    ds = load_dataset(tmp_path / "ds")
    assert ds.scale.maximum == 100 and sorted(ds.matrix.data.tolist()) == [1, 40, 95, 100]


def test_bad_input_leaves_nothing_behind(tmp_path):
    src = write(tmp_path / "combined_data_1.txt", "1:\n11,3,2005-09-06\n12,9,2005-05-13\n")
    with pytest.raises(DataFormatError) as exc:
        prepare_paths([src], tmp_path / "out")
    assert "combined_data_1.txt:3" in str(exc.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["combined_data_1.txt"]
    report = prepare_paths([src], tmp_path / "out", skip_bad_lines=True)
    assert report.ratings == 1 and report.skipped_lines == 1


def test_mixed_formats_need_format_flag(tmp_path):
    a = write(tmp_path / "combined_data_1.txt", COMBINED)
    b = write(tmp_path / "u.data", "1\t1\t5\t874965758\n")
    with pytest.raises(DataFormatError, match="mixed rating formats"):
        detect([a, b])
    with pytest.raises(FileNotFoundError, match="no such file"):
        detect([tmp_path / "missing.txt"])


def test_ml100k_u1_canonical_split(ml100k_dir, tmp_path):
    prepare_paths([ml100k_dir / "u1.base"], tmp_path / "ds", test=ml100k_dir / "u1.test")
    ds = load_dataset(tmp_path / "ds")
    assert ds.matrix.nnz == 80_000 and ds.test_matrix.nnz == 20_000
    assert (ds.n_users, ds.n_movies) == (943, 1682)
    assert ds.titles[int(np.searchsorted(ds.movie_ids, 1))] == "Toy Story (1995)"
    s = make_splits(ds)
    assert s.protocol == "fixed" and s.test.nnz == 20_000
    assert s.train.nnz + s.validation.nnz == 80_000


def test_ml100k_whole_folder(ml100k_dir, tmp_path):
    prepare_paths([ml100k_dir], tmp_path / "ds")
    s = dataset_stats(load_dataset(tmp_path / "ds"))
    assert (s["users"], s["movies"], s["ratings"]) == (943, 1682, 100_000)
    assert s["sparsity"] == pytest.approx(0.063, abs=5e-4)


def test_ml_latest_small_half_stars(ml_latest_small_dir, tmp_path):
    prepare_paths([ml_latest_small_dir / "ratings.csv"], tmp_path / "ds")
    ds = load_dataset(tmp_path / "ds")
    s = dataset_stats(ds)
    assert (s["users"], s["ratings"]) == (610, 100_836)
    assert s["movies"] == 9_724, "only rated movies become columns"
    assert ds.scale.step == 0.5 and s["histogram"]["0.5"] > 0
    assert any(", The (" in t for t in ds.titles)


# ----------------------------------------------------------------------------- hostile use


@pytest.mark.parametrize(
    ("given", "out", "relation"),
    [
        ("in", "in", "is"),
        ("in/combined_data_1.txt", "in", "contains"),
        ("in", "in/ds", "lies inside"),
        ("in/combined_data_1.txt", "in/combined_data_1.txt", "is"),
    ],
)
def test_out_overlapping_an_input_is_refused_whatever_force(tmp_path, given, out, relation):
    src = write(tmp_path / "in" / "combined_data_1.txt", COMBINED)
    for force in (False, True):
        with pytest.raises(ValueError, match=f"--out .* {relation} the input"):
            prepare_paths([tmp_path / given], tmp_path / out, overwrite=force)
    assert src.read_bytes() == COMBINED.encode("latin-1")
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == ["combined_data_1.txt"]


def test_out_overlapping_test_titles_or_found_companions_is_refused(tmp_path):
    src = write(tmp_path / "nf" / "combined_data_1.txt", COMBINED)
    titles = write(tmp_path / "meta" / "movie_titles.csv", TITLES)
    with pytest.raises(ValueError, match="contains the input"):
        prepare_paths([src], tmp_path / "meta", titles=titles, overwrite=True)
    test = write(tmp_path / "split" / "u1.test", "1\t1\t5\t874965758\n")
    base = write(tmp_path / "u1.base", "2\t1\t5\t874965758\n")
    with pytest.raises(ValueError, match="contains the input"):
        prepare_paths([base], tmp_path / "split", test=test, overwrite=True)
    # movie_titles.csv found beside the ratings is an input too
    write(tmp_path / "nf" / "movie_titles.csv", TITLES)
    with pytest.raises(ValueError, match="is the input"):
        prepare_paths([src], tmp_path / "nf" / "movie_titles.csv", overwrite=True)
    assert titles.is_file() and test.is_file() and (tmp_path / "nf" / "movie_titles.csv").is_file()


def test_scale_that_no_dataset_can_hold_is_refused(tmp_path):
    src = write(tmp_path / "r.csv", "1,1,4\n2,1,7\n")
    with pytest.raises(ValueError, match="1:100000:1 cannot be stored: it has 100,000 levels"):
        prepare_paths([src], tmp_path / "ds", scale="1:100000")
    with pytest.raises(ValueError, match="invalid rating scale"):
        prepare_paths([src], tmp_path / "ds", scale="0:1e400")
    with pytest.raises(DataFormatError, match="r.csv:2: rating '7' is outside the scale 1–5"):
        prepare_paths([src], tmp_path / "ds", scale="1:5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.csv"]


def test_large_generic_rating_is_refused_not_stored_wrong(tmp_path):
    src = write(tmp_path / "r.csv", "user,item,rating\n1,10,4\n2,10,5\n4,10,100000\n")
    with pytest.raises(DataFormatError, match=r"r.csv:4: rating '100000' cannot be stored"):
        prepare_paths([src], tmp_path / "ds")
    report = prepare_paths([src], tmp_path / "ds", skip_bad_lines=True)
    assert report.skipped_lines == 1
    assert sorted(load_dataset(tmp_path / "ds").matrix.data.tolist()) == [4, 5]
    src = write(tmp_path / "r.csv", "user,item,rating\n1,10,4\n2,10,5\n4,10,60000\n")
    prepare_paths([src], tmp_path / "ds2")  # 59,997 levels: stored exactly (uint16 codes)
    assert sorted(load_dataset(tmp_path / "ds2").matrix.data.tolist()) == [4, 5, 60000]


def test_probe_pairs_match_exactly_with_18_digit_ids(tmp_path):
    # raw (user, movie) → user * (max movie + 1) + movie overflows int64 here: users 1 and 33
    # of movie 2**59 - 1 had the same key, and user 33's rating went into the probe split.
    movie = 2**59 - 1
    src = write(tmp_path / "combined_data_1.txt", f"{movie}:\n1,3,2005-01-01\n33,4,2005-01-02\n")
    probe = write(tmp_path / "probe.txt", f"{movie}:\n1\n")
    prepare_paths([src], tmp_path / "ds", test=probe)
    ds = load_dataset(tmp_path / "ds")
    assert ds.matrix.nnz == 1 and ds.test_matrix.nnz == 1
    assert ds.user_ids[ds.test_matrix.tocoo().row].tolist() == [1]


def test_gzip_files_and_folders_are_read(tmp_path, ml100k_dir):
    folder = tmp_path / "ml"
    folder.mkdir()
    (folder / "u.data.gz").write_bytes(gzip.compress((ml100k_dir / "u.data").read_bytes()))
    (folder / "u.item").write_bytes((ml100k_dir / "u.item").read_bytes())
    found = detect([folder])
    assert found.fmt == "ml-100k" and found.titles == folder / "u.item"
    prepare_paths([folder], tmp_path / "ds")
    ds = load_dataset(tmp_path / "ds")
    assert ds.n_ratings == 100_000 and ds.titles[0] == "Toy Story (1995)"


def test_a_folder_where_a_file_is_expected(tmp_path):
    src = write(tmp_path / "u1.base", "2\t1\t5\t874965758\n")
    (tmp_path / "u1.test").mkdir()
    with pytest.raises(DataFormatError, match="u1.test: is a folder, not a file"):
        prepare_paths([src], tmp_path / "ds", test=tmp_path / "u1.test")
    (tmp_path / "movie_titles.csv").mkdir()
    with pytest.raises(DataFormatError, match="is a folder, not a file"):
        prepare_paths([src], tmp_path / "ds", titles=tmp_path / "movie_titles.csv")
    assert not (tmp_path / "ds").exists()
