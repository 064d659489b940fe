"""The prepared dataset: a directory holding a CSR users × movies matrix, id maps, titles, the
rating scale and a manifest, written atomically and loaded memory-mapped.

Layout of a prepared directory::

    manifest.json        format version, sources (size, sha256), counts, scale, creation time
    indptr.npy           int64 (n_users + 1,)   CSR row pointers (users)
    indices.npy          int32 (n_ratings,)     movie index of each rating, sorted within a row
    codes.npy            uint8|uint16 (n_ratings,)  (rating - scale.min) / scale.step
    days.npy             int32 (n_ratings,)     days since 1970-01-01 (NO_DATE if unknown); optional
    user_ids.npy         int64 (n_users,)       raw user id of each row
    movie_ids.npy        int64 (n_movies,)      raw movie id of each column
    years.npy            int32 (n_movies,)      release year, 0 when unknown
    titles.json          {"titles": [...], "genres": [...] | null} aligned with movie_ids
    test/                the same four CSR arrays for a fixed test split (optional)
    qualifying/          user/movie index + days of Netflix qualifying pairs (optional)
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from aerec import __version__
from aerec.data.errors import DataFormatError
from aerec.data.ratings import NO_DATE, Ratings, RatingScale, Titles
from aerec.fileio import clean_stale_siblings, make_sibling_dir, move_into_place, remove_path

FORMAT_VERSION = 1
MANIFEST = "manifest.json"


@dataclass
class CsrArrays:
    """Raw CSR arrays of one rating matrix (training data or a fixed test split)."""

    indptr: np.ndarray
    indices: np.ndarray
    codes: np.ndarray
    days: np.ndarray | None

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "indptr.npy", self.indptr)
        np.save(folder / "indices.npy", self.indices)
        np.save(folder / "codes.npy", self.codes)
        if self.days is not None:
            np.save(folder / "days.npy", self.days)

    @classmethod
    def load(cls, folder: Path, mmap: bool = True) -> CsrArrays:
        mode = "r" if mmap else None
        days_path = folder / "days.npy"
        return cls(
            np.load(folder / "indptr.npy", mmap_mode=mode),
            np.load(folder / "indices.npy", mmap_mode=mode),
            np.load(folder / "codes.npy", mmap_mode=mode),
            np.load(days_path, mmap_mode=mode) if days_path.exists() else None,
        )


@dataclass
class PreparedDataset:
    """A loaded prepared dataset. Arrays are memory-mapped; ``matrix`` is built on first use.

    Rows are users (``user_ids[row]`` is the raw id), columns are movies (``movie_ids[col]``).
    """

    path: Path
    manifest: dict
    arrays: CsrArrays
    user_ids: np.ndarray
    movie_ids: np.ndarray
    titles: list[str]
    years: np.ndarray
    genres: list[str] | None = None
    test_arrays: CsrArrays | None = None
    qualifying: dict[str, np.ndarray] | None = field(default=None, repr=False)

    @property
    def scale(self) -> RatingScale:
        return RatingScale.from_dict(self.manifest["scale"])

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_movies(self) -> int:
        return len(self.movie_ids)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_users, self.n_movies)

    def _to_csr(self, arrays: CsrArrays) -> sp.csr_matrix:
        data = self.scale.decode(arrays.codes)
        # scipy keeps the int32 indices without copying; indptr is small.
        return sp.csr_matrix(
            (data, np.asarray(arrays.indices), np.asarray(arrays.indptr)),
            shape=self.shape,
            copy=False,
        )

    @cached_property
    def matrix(self) -> sp.csr_matrix:
        """All ratings except a fixed test split: float32 CSR ``(n_users, n_movies)``."""
        return self._to_csr(self.arrays)

    @cached_property
    def test_matrix(self) -> sp.csr_matrix | None:
        """The fixed test split given at prepare time (``--test``), else ``None``."""
        return None if self.test_arrays is None else self._to_csr(self.test_arrays)

    @property
    def days(self) -> np.ndarray | None:
        """Days since 1970-01-01 of each rating in ``matrix`` (CSR order), or ``None``."""
        return self.arrays.days

    @property
    def test_days(self) -> np.ndarray | None:
        return None if self.test_arrays is None else self.test_arrays.days

    @property
    def n_ratings(self) -> int:
        """Ratings in the matrix plus the fixed test split."""
        n = len(self.arrays.indices)
        return n + (len(self.test_arrays.indices) if self.test_arrays is not None else 0)

    def movie_index(self) -> dict[int, int]:
        """Raw movie id → column index."""
        return {int(m): i for i, m in enumerate(self.movie_ids)}

    def __repr__(self) -> str:
        """One line — path, users, movies, ratings, sparsity (the filled share, as
        ``aerec data info`` reports it) — instead of the dataclass's dump of every array."""
        n, cells = self.n_ratings, self.n_users * self.n_movies
        test = 0 if self.test_arrays is None else len(self.test_arrays.indices)
        return (
            f"PreparedDataset({str(self.path)!r}: {self.n_users:,} users × "
            f"{self.n_movies:,} movies, {n:,} ratings, sparsity {n / cells if cells else 0:.4g}"
            + (f", {test:,} in the fixed test split" if test else "") + ")"
        )


def load_dataset(path: str | Path) -> PreparedDataset:
    """Open a prepared dataset directory (memory-mapped; cheap even for all of Netflix)."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{path}: not a prepared dataset (no {MANIFEST}); create one with `aerec data prepare`"
        )
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataFormatError(
            manifest_path, f"unsupported format_version {manifest.get('format_version')!r}"
        )
    meta = json.loads((path / "titles.json").read_text(encoding="utf-8"))
    qualifying = None
    if (path / "qualifying").is_dir():
        qualifying = {
            name: np.load(path / "qualifying" / f"{name}.npy", mmap_mode="r")
            for name in ("users", "movies", "days")
        }
    return PreparedDataset(
        path=path,
        manifest=manifest,
        arrays=CsrArrays.load(path),
        user_ids=np.load(path / "user_ids.npy", mmap_mode="r"),
        movie_ids=np.load(path / "movie_ids.npy", mmap_mode="r"),
        titles=meta["titles"],
        years=np.load(path / "years.npy"),
        genres=meta.get("genres"),
        test_arrays=CsrArrays.load(path / "test") if (path / "test").is_dir() else None,
        qualifying=qualifying,
    )


# --------------------------------------------------------------------------------------------
# writing


def _dense_ids(raw: np.ndarray, universe: np.ndarray) -> np.ndarray:
    """Position of each ``raw`` id in the sorted array ``universe`` (all ids are present).

    Compact non-negative ids (Netflix, MovieLens) go through a lookup table — one gather,
    several times faster than a binary search per rating; others fall back to searchsorted.
    """
    if len(universe) and universe[0] >= 0 and universe[-1] < max(8 * len(raw), 1 << 22):
        table = np.zeros(int(universe[-1]) + 1, dtype=np.int32)
        table[universe] = np.arange(len(universe), dtype=np.int32)
        return table[raw]
    return np.searchsorted(universe, raw).astype(np.int32)


def _sorted_unique(*columns: np.ndarray) -> np.ndarray:
    """Sorted distinct ids over several int64 columns, O(n) for compact non-negative ids."""
    cols = [c for c in columns if len(c)]
    if not cols:
        return np.zeros(0, np.int64)
    lo = min(int(c.min()) for c in cols)
    hi = max(int(c.max()) for c in cols)
    total = sum(len(c) for c in cols)
    if lo >= 0 and hi < max(4 * total, 1 << 20) and hi < (1 << 31):
        seen = np.zeros(hi + 1, dtype=bool)
        for c in cols:
            seen[c] = True
        return np.flatnonzero(seen).astype(np.int64)
    return np.unique(np.concatenate(cols))


def _counting_sort(
    user_idx: np.ndarray, movie_idx: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group ratings by user in O(n): CSR ``indptr``, movie ``indices`` and the permutation.

    scipy's ``coo_tocsr`` kernel is a counting sort that keeps duplicates (the public
    ``tocsr()`` would sum them, hiding duplicate pairs); carrying each rating's position as
    the data gives the permutation for the other columns. Falls back to a stable argsort.
    """
    n = len(user_idx)
    idx_dtype = np.int32 if max(n, *shape) < np.iinfo(np.int32).max else np.int64
    rows = user_idx.astype(idx_dtype, copy=False)
    cols = movie_idx.astype(idx_dtype, copy=False)
    try:
        from scipy.sparse import _sparsetools

        indptr = np.empty(shape[0] + 1, idx_dtype)
        indices = np.empty(n, idx_dtype)
        perm = np.empty(n, np.int64)
        _sparsetools.coo_tocsr(
            shape[0], shape[1], n, rows, cols, np.arange(n, dtype=np.int64), indptr, indices, perm
        )
    except (ImportError, AttributeError, TypeError, ValueError):  # pragma: no cover
        perm = np.argsort(rows, kind="stable")
        indices = cols[perm]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=shape[0]))])
    return indptr.astype(idx_dtype), indices, perm


def _build_csr(
    user_idx: np.ndarray,
    movie_idx: np.ndarray,
    codes: np.ndarray,
    days: np.ndarray | None,
    shape: tuple[int, int],
) -> tuple[CsrArrays, np.ndarray]:
    """Sort ratings into CSR order (by user, then movie) in O(n) + per-row sorts.

    Returns the arrays and a boolean mask (in CSR order) of entries that repeat the previous
    (user, movie) pair, so callers can report or drop duplicates.
    """
    n = len(user_idx)
    indptr, indices, perm = _counting_sort(user_idx, movie_idx, shape)
    csr = sp.csr_matrix((perm, indices, indptr), shape=shape)
    csr.has_sorted_indices = False
    csr.sort_indices()  # per-row sort of movie indices, carrying the positions along
    perm = csr.data
    indices = csr.indices.astype(np.int32, copy=False)
    indptr = csr.indptr.astype(np.int64)
    same = np.zeros(n, dtype=bool)
    if n > 1:
        same[1:] = indices[1:] == indices[:-1]
        starts = indptr[:-1]
        same[starts[starts < n]] = False  # a row start never repeats the previous row's entry
    arrays = CsrArrays(indptr, indices, codes[perm], None if days is None else days[perm])
    return arrays, same


def _file_entry(path: Path, hash_limit_bytes: int) -> dict:
    """Manifest entry for a source: size, modification time and a SHA-256 of its bytes."""
    st = path.stat()
    entry = {"path": str(path), "bytes": st.st_size, "mtime": st.st_mtime}
    if path.is_file() and st.st_size <= hash_limit_bytes:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        entry["sha256"] = h.hexdigest()
    return entry


def _source_entries(sources: list[str], hash_limit_bytes: int) -> list[dict]:
    entries = []
    for s in dict.fromkeys(sources):
        p = Path(s)
        if p.is_dir():
            files = sorted(x for x in p.iterdir() if x.is_file())
            entries.append(
                {"path": str(p), "files": len(files), "bytes": sum(x.stat().st_size for x in files)}
            )
        elif p.exists():
            entries.append(_file_entry(p, hash_limit_bytes))
    return entries


def _check_scale(ratings: Ratings, scale: RatingScale, label: str) -> None:
    bad = scale.invalid_mask(ratings.ratings)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataFormatError(
            ", ".join(dict.fromkeys(ratings.sources)) or label,
            f"{int(bad.sum())} rating(s) outside the scale {scale.minimum:g}–{scale.maximum:g} "
            f"(step {scale.step:g}); first: user {ratings.user_ids[i]}, movie "
            f"{ratings.movie_ids[i]}, rating {ratings.ratings[i]:g}",
        )


def check_out_apart(out: str | Path, inputs: list[str | Path | None]) -> None:
    """Refuse (``ValueError``) an output folder that is, contains or lies inside one of the
    ``inputs`` (files or folders; None entries are ignored): replacing it would destroy them."""
    target = Path(out).resolve()
    for given in inputs:
        if given is None:
            continue
        source = Path(given).resolve()
        if target == source:
            relation = "is"
        elif target in source.parents:
            relation = "contains"
        elif source in target.parents:
            relation = "lies inside"
        else:
            continue
        raise ValueError(
            f"--out {out} {relation} the input {given}; choose an --out apart from the inputs"
        )


@dataclass
class PrepareReport:
    """What ``write_prepared`` did: counts and anything dropped."""

    path: Path
    users: int
    movies: int
    ratings: int
    test_ratings: int
    duplicates_dropped: int = 0
    skipped_lines: int = 0
    seconds: float = 0.0


def write_prepared(
    out: str | Path,
    ratings: Ratings,
    *,
    titles: Titles | None = None,
    test: Ratings | None = None,
    qualifying: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    scale: RatingScale | None = None,
    skip_bad_lines: bool = False,
    overwrite: bool = False,
    extra_sources: list[str] | None = None,
    manifest_extra: dict | None = None,
    hash_limit_bytes: int = 4 << 30,
) -> PrepareReport:
    """Write a prepared dataset directory atomically.

    ``ratings`` become the matrix; ``test`` (optional) a fixed test split over the same id maps.
    Duplicate (user, movie) pairs are an error naming the pair, unless ``skip_bad_lines`` (then
    the first occurrence is kept and the rest counted). The directory appears only when complete:
    it is built beside ``out`` under a temporary name and renamed into place.
    """
    start = time.perf_counter()
    out = Path(out)
    check_out_apart(
        out,
        [*ratings.sources, *(test.sources if test is not None else []), *(extra_sources or [])],
    )
    clean_stale_siblings(out)
    if out.exists() and not overwrite and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out}: already exists; choose another --out or pass --force")
    if len(ratings) == 0:
        raise DataFormatError(", ".join(ratings.sources) or "input", "no ratings found")
    parts = [ratings] + ([test] if test is not None else [])
    if scale is None:
        fixed = {p.scale for p in parts if p.scale is not None}
        if len(fixed) == 1:
            scale = fixed.pop()
        else:
            scale = RatingScale.infer(np.concatenate([p.ratings for p in parts]))
    problem = scale.storage_problem()
    if problem is not None:
        raise DataFormatError(
            ", ".join(dict.fromkeys(s for p in parts for s in p.sources)) or "ratings",
            f"the ratings need the scale {scale.minimum:g}–{scale.maximum:g} (step "
            f"{scale.step:g}), which cannot be stored: {problem}; pass --scale MIN:MAX[:STEP]",
        )
    for p, label in zip(parts, ["ratings", "test ratings"]):
        _check_scale(p, scale, label)

    user_universe = _sorted_unique(*(p.user_ids for p in parts))
    # Only rated movies become columns: movie_titles.csv lists all 17,770 Netflix movies even
    # when only combined_data_1.txt (4,499 of them) is prepared.
    movie_universe = _sorted_unique(*(p.movie_ids for p in parts))
    shape = (len(user_universe), len(movie_universe))
    code_dtype = np.uint8 if scale.levels <= 256 else np.uint16

    def to_arrays(r: Ratings, label: str) -> tuple[CsrArrays, int]:
        codes = scale.codes(r.ratings).astype(code_dtype)  # exact: scale storable, on scale
        arrays, dup = _build_csr(
            _dense_ids(r.user_ids, user_universe),
            _dense_ids(r.movie_ids, movie_universe),
            codes,
            r.days,
            shape,
        )
        n_dup = int(dup.sum())
        if n_dup:
            if not skip_bad_lines:
                i = int(np.argmax(dup))
                row = int(np.searchsorted(arrays.indptr, i, side="right") - 1)
                raise DataFormatError(
                    ", ".join(dict.fromkeys(r.sources)) or label,
                    f"{n_dup} duplicate (user, movie) pair(s) in the {label}; first: user "
                    f"{user_universe[row]}, movie {movie_universe[arrays.indices[i]]} "
                    "(pass --skip-bad-lines to keep the first and drop the rest)",
                )
            arrays = _drop(arrays, ~dup, shape[0])
        return arrays, n_dup

    train_arrays, n_dup = to_arrays(ratings, "ratings")
    test_arrays = None
    if test is not None:
        test_arrays, n_dup_test = to_arrays(test, "test ratings")
        n_dup += n_dup_test
        overlap = _overlap_count(train_arrays, test_arrays)
        if overlap:
            raise DataFormatError(
                ", ".join(dict.fromkeys(test.sources)) or "test",
                f"{overlap} (user, movie) pair(s) appear in both the ratings and the test split",
            )

    titles_list = [""] * shape[1]
    years = np.zeros(shape[1], np.int32)
    genres = None
    if titles is not None:
        pos = np.minimum(np.searchsorted(movie_universe, titles.movie_ids), shape[1] - 1)
        known = movie_universe[pos] == titles.movie_ids
        cols = pos[known]
        for c, t in zip(cols.tolist(), (t for t, k in zip(titles.titles, known) if k)):
            titles_list[c] = t
        years[cols] = titles.years[known]
        if titles.genres is not None:
            genres = [""] * shape[1]
            for c, g in zip(cols.tolist(), (g for g, k in zip(titles.genres, known) if k)):
                genres[c] = g

    sources = [*ratings.sources, *(test.sources if test is not None else [])]
    sources += extra_sources or []
    n_total = len(train_arrays.indices) + (len(test_arrays.indices) if test_arrays else 0)
    days_all = [a.days for a in (train_arrays, test_arrays) if a is not None and a.days is not None]
    manifest = {
        "format_version": FORMAT_VERSION,
        "aerec_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "sources": _source_entries(sources, hash_limit_bytes),
        "users": shape[0],
        "movies": shape[1],
        "ratings": n_total,
        "train_ratings": len(train_arrays.indices),
        "test_ratings": len(test_arrays.indices) if test_arrays else 0,
        "has_fixed_test": test_arrays is not None,
        "has_dates": bool(days_all),
        "has_titles": titles is not None,
        "scale": scale.to_dict(),
        "duplicates_dropped": n_dup,
        "skipped_lines": sum(p.skipped_lines for p in parts),
        **(manifest_extra or {}),
    }

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = make_sibling_dir(out, "tmp")  # .NAME.tmp-PID-…: a later run cleans it if we are killed
    try:
        train_arrays.save(tmp)
        if test_arrays is not None:
            test_arrays.save(tmp / "test")
        if qualifying is not None:
            q_movies, q_users, q_days = qualifying
            q = tmp / "qualifying"
            q.mkdir()
            np.save(q / "users", _lookup_known(q_users, user_universe, "qualifying user"))
            np.save(q / "movies", _lookup_known(q_movies, movie_universe, "qualifying movie"))
            np.save(q / "days", np.asarray(q_days, np.int32))
        np.save(tmp / "user_ids.npy", user_universe)
        np.save(tmp / "movie_ids.npy", movie_universe)
        np.save(tmp / "years.npy", years)
        (tmp / "titles.json").write_text(
            json.dumps({"titles": titles_list, "genres": genres}, ensure_ascii=False),
            encoding="utf-8",
        )
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2))
        move_into_place(tmp, out)
    except BaseException:
        remove_path(tmp)
        raise
    return PrepareReport(
        out,
        shape[0],
        shape[1],
        n_total,
        manifest["test_ratings"],
        n_dup,
        manifest["skipped_lines"],
        time.perf_counter() - start,
    )


def _drop(arrays: CsrArrays, keep: np.ndarray, n_rows: int) -> CsrArrays:
    """Keep only entries where ``keep`` (CSR order) is True."""
    kept_before = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
    return CsrArrays(
        kept_before[arrays.indptr],
        arrays.indices[keep],
        arrays.codes[keep],
        None if arrays.days is None else arrays.days[keep],
    )


def _overlap_count(a: CsrArrays, b: CsrArrays) -> int:
    """Number of (row, col) pairs present in both CSR structures (same shape)."""
    n_rows = len(a.indptr) - 1
    rows_a = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(a.indptr))
    rows_b = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(b.indptr))
    width = int(max(a.indices.max(initial=0), b.indices.max(initial=0))) + 1
    keys_a = rows_a * width + a.indices
    keys_b = rows_b * width + b.indices
    return int(np.isin(keys_b, keys_a).sum())


def _lookup_known(raw: np.ndarray, universe: np.ndarray, what: str) -> np.ndarray:
    raw = np.asarray(raw, np.int64)
    pos = np.searchsorted(universe, raw)
    pos_c = np.minimum(pos, len(universe) - 1)
    missing = universe[pos_c] != raw
    if missing.any():
        raise DataFormatError(
            "qualifying",
            f"{int(missing.sum())} {what}(s) absent from the ratings, e.g. "
            f"{int(raw[np.argmax(missing)])}",
        )
    return pos.astype(np.int32)


__all__ = [
    "NO_DATE",
    "CsrArrays",
    "PrepareReport",
    "PreparedDataset",
    "load_dataset",
    "write_prepared",
]
