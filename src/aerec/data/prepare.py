"""From raw rating files to a prepared dataset: format detection, reading, and writing.

``prepare_paths`` is what ``aerec data prepare`` calls. Formats are detected from the paths
given (file names first, then a sniff of the first bytes); ``fmt`` forces one.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from aerec.data import generic, inputs, movielens, netflix
from aerec.data.errors import DataFormatError
from aerec.data.ratings import Ratings, RatingScale, Titles
from aerec.data.store import PrepareReport, check_out_apart, write_prepared
from aerec.fileio import clean_stale_siblings

#: Rating-file formats ``--format`` accepts.
FORMATS = ("netflix", "netflix-training-set", "ml-100k", "ml-dat", "ml-csv", "generic")


@dataclass
class DetectedInput:
    """What the given paths turned out to be."""

    fmt: str
    rating_files: list[Path]
    titles: Path | None = None
    probe: Path | None = None
    qualifying: Path | None = None


def _expand(paths: list[Path]) -> list[Path]:
    """Folders stand for the rating and title files inside them."""
    out: list[Path] = []
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file or folder")
        if not p.is_dir():
            out.append(p)
            continue
        if p.name == "training_set" or any(p.glob("mv_*.txt")):
            out.append(p)
            continue
        names: dict[str, Path] = {}
        for c in sorted(p.iterdir(), key=lambda c: c.name.lower().endswith(".gz")):
            names.setdefault(inputs.strip_gz(c.name), c)  # ratings.csv.gz stands for ratings.csv
        picked = sorted(
            c for c in p.iterdir() if re.fullmatch(r"combined_data_.*\.txt(\.gz)?", c.name)
        )
        for name in ("training_set", "probe.txt", "qualifying.txt"):
            if name in names and not picked:
                picked.append(names[name])
        for name in ("u.data", "ratings.dat", "ratings.csv"):
            if name in names and not picked:
                picked.append(names[name])
        if not picked:
            raise DataFormatError(p, "no rating files recognised in this folder")
        titles = [names[n] for n in ("movie_titles.csv", "movie_titles.txt") if n in names]
        out.extend(picked + titles[:1])
    return out


def _role(path: Path) -> str:
    """Classify one file: 'titles', 'probe', 'qualifying' or a rating format (``.gz`` files by
    the name without it)."""
    name = inputs.strip_gz(path.name.lower())
    if path.is_dir():
        return "netflix-training-set"
    if name.startswith("movie_titles"):
        return "netflix-titles"
    if name == "probe.txt":
        return "probe"
    if name == "qualifying.txt":
        return "qualifying"
    if name.startswith("combined_data"):
        return "netflix"
    if name == "u.item":
        return "ml-100k-titles"
    if name == "movies.dat":
        return "ml-dat-titles"
    if name == "movies.csv":
        return "ml-csv-titles"
    if name == "u.data" or (name.startswith("u") and name.endswith((".base", ".test"))):
        return "ml-100k"
    if name == "ratings.dat":
        return "ml-dat"
    if name == "ratings.csv" and movielens.looks_like_ml_csv(path):
        return "ml-csv"
    for fmt, sniff in [
        ("netflix", netflix.looks_like_combined),
        ("probe", netflix.looks_like_probe),
        ("qualifying", netflix.looks_like_qualifying),
        ("ml-dat", movielens.looks_like_ml_dat),
        ("ml-csv", movielens.looks_like_ml_csv),
        ("ml-100k", movielens.looks_like_ml100k),
    ]:
        if sniff(path):
            return fmt
    return "generic"


def detect(paths: list[str | Path], fmt: str | None = None) -> DetectedInput:
    """Work out the rating format, the rating files and the companion files of ``paths``."""
    if fmt is not None and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    files = _expand([Path(p) for p in paths])
    found = DetectedInput(fmt or "", [])
    formats = set()
    for f in files:
        role = _role(f) if fmt is None or f.is_dir() else fmt
        if fmt is not None and not f.is_dir():
            sniffed = _role(f)
            if sniffed.endswith("titles") or sniffed in ("probe", "qualifying"):
                role = sniffed
        if role.endswith("titles"):
            found.titles = f
        elif role == "probe":
            found.probe = f
        elif role == "qualifying":
            found.qualifying = f
        else:
            formats.add(role)
            found.rating_files.append(f)
    if not found.rating_files:
        raise DataFormatError(", ".join(map(str, files)), "no rating files among these paths")
    if len(formats) > 1:
        raise DataFormatError(
            ", ".join(map(str, found.rating_files)),
            f"mixed rating formats ({', '.join(sorted(formats))}); pass --format to force one",
        )
    found.fmt = fmt or formats.pop()
    if found.titles is None:
        found.titles = _companion_titles(found.fmt, found.rating_files[0])
    return found


def _companion_titles(fmt: str, first: Path) -> Path | None:
    if fmt.startswith("netflix"):
        folder = first if first.is_dir() else first.parent
        for base in (folder, folder.parent):
            for name in ("movie_titles.csv", "movie_titles.txt"):
                if (base / name).is_file():
                    return base / name
        return None
    if fmt == "generic":
        return None
    return movielens.titles_path_for(first)


def read_ratings(
    path: Path, fmt: str, *, scale: RatingScale | None = None, skip_bad_lines: bool = False
) -> Ratings:
    """Read one rating file (or training_set folder) in format ``fmt``."""
    try:
        return _read_ratings(path, fmt, scale=scale, skip_bad_lines=skip_bad_lines)
    except (FileNotFoundError, DataFormatError):
        raise
    except OSError as exc:  # e.g. the file vanished or became unreadable mid-read
        raise DataFormatError(path, f"cannot read: {exc.strerror or exc}") from None


def _read_ratings(
    path: Path, fmt: str, *, scale: RatingScale | None, skip_bad_lines: bool
) -> Ratings:
    if fmt == "netflix":
        r = netflix.read_combined(path, skip_bad_lines=skip_bad_lines)
    elif fmt == "netflix-training-set":
        r = netflix.read_training_set(path, skip_bad_lines=skip_bad_lines)
    elif fmt == "ml-100k":
        r = movielens.read_ml100k_ratings(path, skip_bad_lines=skip_bad_lines)
    elif fmt == "ml-dat":
        r = movielens.read_ml_dat_ratings(path, skip_bad_lines=skip_bad_lines)
    elif fmt == "ml-csv":
        r = movielens.read_ml_csv_ratings(path, skip_bad_lines=skip_bad_lines)
    elif fmt == "generic":
        r = generic.read_generic(path, scale=scale, skip_bad_lines=skip_bad_lines)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return r


def read_titles(path: Path) -> Titles:
    """Read a titles file, whichever family it belongs to."""
    inputs.check_regular_file(path)  # a folder or device is named as such, not mis-sniffed
    role = _role(path)
    if role == "netflix-titles":
        return netflix.read_movie_titles(path)
    if role == "ml-100k-titles":
        return movielens.read_ml100k_items(path)
    if role == "ml-dat-titles":
        return movielens.read_ml_dat_movies(path)
    if role == "ml-csv-titles":
        return movielens.read_ml_csv_movies(path)
    raise DataFormatError(
        path, "not a recognised titles file (movie_titles.csv, u.item, movies.dat or movies.csv)"
    )


def _pair_keys(
    users: np.ndarray, movies: np.ndarray, probe_users: np.ndarray, probe_movies: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One int64 key per (user, movie) pair of the ratings and of the probe, equal exactly when
    the pairs are: built from dense ranks, so raw ids up to 18 digits cannot overflow."""
    _, user_rank = np.unique(np.concatenate([users, probe_users]), return_inverse=True)
    movie_universe, movie_rank = np.unique(
        np.concatenate([movies, probe_movies]), return_inverse=True
    )
    keys = user_rank.astype(np.int64) * len(movie_universe) + movie_rank
    return keys[: len(users)], keys[len(users) :]


def split_out_probe(ratings: Ratings, probe: Path) -> tuple[Ratings, Ratings]:
    """Move the ratings named by a Netflix ``probe.txt`` into a test table."""
    movies, users = netflix.read_probe(probe)
    keys, probe_keys = _pair_keys(ratings.user_ids, ratings.movie_ids, users, movies)
    in_probe = np.isin(keys, probe_keys)
    missing = len(np.unique(probe_keys)) - int(in_probe.sum())
    if missing > 0:
        raise DataFormatError(
            probe, f"{missing} probe (user, movie) pair(s) have no rating in the training data"
        )

    def take(mask: np.ndarray, sources: list[str]) -> Ratings:
        return Ratings(
            ratings.user_ids[mask],
            ratings.movie_ids[mask],
            ratings.ratings[mask],
            None if ratings.days is None else ratings.days[mask],
            ratings.scale,
            sources,
            ratings.skipped_lines if sources is ratings.sources else 0,
        )

    return take(~in_probe, ratings.sources), take(in_probe, [str(probe)])


def prepare_paths(
    paths: list[str | Path],
    out: str | Path,
    *,
    test: str | Path | None = None,
    fmt: str | None = None,
    titles: str | Path | None = None,
    scale: RatingScale | str | None = None,
    skip_bad_lines: bool = False,
    overwrite: bool = False,
) -> PrepareReport:
    """Read rating files (any supported format) and write a prepared dataset to ``out``.

    ``test`` names a fixed test split: a rating file of the same family (MovieLens ``u1.test``)
    or a Netflix ``probe.txt`` (its pairs are moved out of the ratings into the test split).
    A ``probe.txt`` among ``paths`` is treated the same way.

    ``out`` may not be, contain or lie inside any input (``ValueError``, whatever
    ``overwrite``); a scale that a prepared dataset cannot hold is refused (``ValueError``).
    """
    start = time.perf_counter()
    check_out_apart(out, [*paths, test, titles])
    if isinstance(scale, str):
        scale = RatingScale.parse(scale)
    if scale is not None and (problem := scale.storage_problem()) is not None:
        raise ValueError(
            f"rating scale {scale.minimum:g}:{scale.maximum:g}:{scale.step:g} cannot be stored: "
            f"{problem}"
        )
    clean_stale_siblings(out)
    found = detect(list(paths), fmt)
    check_out_apart(out, [found.titles, found.probe, found.qualifying])
    ratings = Ratings.concat(
        [
            read_ratings(f, found.fmt, scale=scale, skip_bad_lines=skip_bad_lines)
            for f in found.rating_files
        ]
    )
    probe = found.probe
    test_ratings = None
    if test is not None:
        test = Path(test)
        if _role(test) == "probe":
            probe = test
        else:
            test_fmt = found.fmt if found.fmt != "netflix-training-set" else "netflix"
            test_ratings = read_ratings(test, test_fmt, scale=scale, skip_bad_lines=skip_bad_lines)
    test_kind = None
    if probe is not None:
        if test_ratings is not None:
            raise ValueError("give either a probe file or a --test rating file, not both")
        ratings, test_ratings = split_out_probe(ratings, probe)
        test_kind = "probe"
    elif test_ratings is not None:
        test_kind = "file"
    titles_path = Path(titles) if titles is not None else found.titles
    title_table = read_titles(titles_path) if titles_path is not None else None
    qualifying = netflix.read_qualifying(found.qualifying) if found.qualifying else None
    extra = [str(p) for p in (titles_path, found.qualifying) if p is not None]
    report = write_prepared(
        out,
        ratings,
        titles=title_table,
        test=test_ratings,
        qualifying=qualifying,
        scale=scale,
        skip_bad_lines=skip_bad_lines,
        overwrite=overwrite,
        extra_sources=extra,
        manifest_extra={"input_format": found.fmt, "test_kind": test_kind},
    )
    report.seconds = time.perf_counter() - start  # reading included
    return report
