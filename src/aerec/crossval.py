"""Cross-validation: one training configuration on k folds, each fold scored beside the
baselines, then the mean and spread of every metric (``aerec cross-validate``).

Where the folds come from:

* **MovieLens 100K's canonical folds** — given its folder (``u1.base`` / ``u1.test`` …
  ``u5.base`` / ``u5.test``), fold ``un`` is ``un.base`` with ``un.test`` as the fixed test
  split, as the published results use them (``folds`` ≤ 5 takes u1 … u{folds});
* **a seeded k-fold split** of anything else — a prepared dataset, or rating files, which are
  prepared first: every rating (a stored fixed test split included) goes to exactly one fold by
  a seeded shuffle, and fold ``i``'s ratings are its test split, the others its training data.

Each fold becomes a prepared dataset with a fixed test split (``OUT/data/FOLD``), is trained by
:func:`aerec.train.train` (``OUT/runs/FOLD``; the validation split, 10 % of the training
ratings, chooses everything) and scored by :func:`aerec.evaluate.evaluate_run` — exactly what
``aerec data prepare --test``, ``aerec train`` and ``aerec evaluate`` do for one fold. Without
``out`` all of it goes to a temporary folder that is removed at the end.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aerec.config import TrainConfig
from aerec.evaluate import EvaluationReport, evaluate_runs
from aerec.jsonable import plain
from aerec.quality import BIAS_BASELINE, POPULARITY, shortfalls

__all__ = ["METRICS", "CrossValidation", "FoldResult", "cross_validate", "movielens_folds"]

#: The metrics summarised over the folds (:class:`aerec.evaluate.ModelResult` fields).
METRICS = ("rmse", "mae", "precision", "recall", "ndcg")
SUMMARY_JSON = "crossval.json"
SUMMARY_CSV = "crossval.csv"
#: MovieLens 100K ships five canonical folds.
MOVIELENS_FOLDS = 5


@dataclass
class FoldResult:
    """One fold: where its data and run are, how long training took, and its table."""

    name: str
    dataset: str
    run_dir: str
    train_seconds: float
    report: EvaluationReport

    def to_dict(self) -> dict:
        return {"fold": self.name, "dataset": self.dataset, "run_dir": self.run_dir,
                "train_seconds": self.train_seconds, "test_ratings": self.report.test_ratings,
                "results": [asdict(r) for r in self.report.results]}


@dataclass
class CrossValidation:
    """Every fold's evaluation table and their summary (mean and standard deviation over the
    folds of each row's metrics; the standard deviation is NumPy's default, ``ddof=0``, as
    Surprise's ``cross_validate`` reports it)."""

    source: str
    #: ``"movielens-100k"`` (the canonical u1 … u5) or ``"k-fold"`` (seeded).
    protocol: str
    model: str
    config: dict
    folds: list[FoldResult]
    k: int
    seed: int
    seconds: float = 0.0
    out_dir: str | None = None
    files: list[str] = field(default_factory=list)

    @property
    def names(self) -> list[str]:
        """The table's rows (the model first, then the baselines), as in every fold."""
        return [r.name for r in self.folds[0].report.results] if self.folds else []

    def values(self, name: str, metric: str) -> list[float | None]:
        """``metric`` of row ``name`` in each fold (``None`` where the row has no such
        metric, e.g. the RMSE of popularity)."""
        return [getattr(f.report.result(name), metric) for f in self.folds]

    def summary(self) -> list[dict]:
        """One dict per row: ``name``, ``kind`` and ``{metric}_mean`` / ``{metric}_std`` for
        each of :data:`METRICS` (``None`` where the row has no such metric)."""
        rows = []
        for name in self.names:
            row: dict[str, Any] = {"name": name,
                                   "kind": self.folds[0].report.result(name).kind}
            for metric in METRICS:
                values = self.values(name, metric)
                if any(v is None for v in values):
                    row[f"{metric}_mean"] = row[f"{metric}_std"] = None
                    continue
                array = np.asarray(values, dtype=np.float64)
                row[f"{metric}_mean"] = float(np.mean(array))
                row[f"{metric}_std"] = float(np.std(array))
            rows.append(row)
        return rows

    def warnings(self) -> list[str]:
        """The model's shortfalls on the means (:func:`aerec.quality.shortfalls`)."""
        means = {r["name"]: {"rmse": r["rmse_mean"], "ndcg": r["ndcg_mean"]}
                 for r in self.summary()}
        out = []
        for r in self.summary():
            if r["kind"] != "model":
                continue
            found = shortfalls(means[r["name"]], means.get(BIAS_BASELINE),
                               means.get(POPULARITY), self.k)
            if found:
                out.append(f"{r['name']} (mean over {len(self.folds)} folds): "
                           + "; ".join(found))
        return out

    def to_dict(self) -> dict:
        """JSON-ready form: the folds' rows, the summary and the warnings."""
        return plain({
            "source": self.source, "protocol": self.protocol, "model": self.model,
            "config": self.config, "k": self.k, "seed": self.seed, "seconds": self.seconds,
            "out_dir": self.out_dir, "folds": [f.to_dict() for f in self.folds],
            "summary": self.summary(), "warnings": self.warnings(),
        })

    def to_csv(self) -> str:
        """One line per fold and row (``fold`` = the fold's name), then per row its ``mean``
        and ``std`` lines."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["fold", "name", "kind", *METRICS, "train_seconds"])
        for f in self.folds:
            for r in f.report.results:
                writer.writerow([f.name, r.name, r.kind, *(_csv(getattr(r, m)) for m in METRICS),
                                 f"{f.train_seconds:.3f}" if r.kind == "model" else ""])
        for row in self.summary():
            for stat in ("mean", "std"):
                writer.writerow([stat, row["name"], row["kind"],
                                 *(_csv(row[f"{m}_{stat}"]) for m in METRICS), ""])
        return buffer.getvalue()

    def write(self, out_dir: str | Path) -> list[Path]:
        """Write ``crossval.json`` and ``crossval.csv`` into ``out_dir``; returns their paths."""
        from aerec.fileio import atomic_write

        out_dir = Path(out_dir)
        paths = [out_dir / SUMMARY_JSON, out_dir / SUMMARY_CSV]
        with atomic_write(paths[0]) as f:
            f.write(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")
        with atomic_write(paths[1]) as f:
            f.write(self.to_csv())
        return paths

    def __str__(self) -> str:
        """The summary as plain text (``print(cv)``): mean ± std of RMSE, MAE and NDCG@k."""
        header = ["model", "kind", "RMSE", "MAE", f"NDCG@{self.k}"]
        lines = [header]
        for row in self.summary():
            lines.append([row["name"], row["kind"],
                          *(mean_std(row, m) for m in ("rmse", "mae", "ndcg"))])
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        text = [f"{self.model} on {self.source}: {len(self.folds)} folds ({self.protocol}), "
                "mean ± std"]
        for line in lines:
            text.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                                  for i, (c, w) in enumerate(zip(line, widths))).rstrip())
        text += [f"warning: {w}" for w in self.warnings()]
        return "\n".join(text)


def mean_std(row: dict, metric: str, digits: int = 4) -> str:
    """``"0.9123 ± 0.0051"`` for a summary row's metric, ``"—"`` where it has none."""
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    if mean is None or not math.isfinite(mean):
        return "—"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _csv(value: float | None) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.6f}"


# ----------------------------------------------------------------------------- the folds


def movielens_folds(folder: str | Path) -> list[tuple[str, Path, Path]]:
    """The canonical MovieLens 100K folds found in ``folder``: ``(name, base, test)`` for each
    ``u{n}.base`` / ``u{n}.test`` pair, n = 1 … 5 (empty when there are none)."""
    folder = Path(folder)
    found = []
    for n in range(1, MOVIELENS_FOLDS + 1):
        base, test = folder / f"u{n}.base", folder / f"u{n}.test"
        if base.is_file() and test.is_file():
            found.append((f"u{n}", base, test))
    return found


def _movielens_datasets(folder: Path, folds: int, data_dir: Path) -> list[tuple[str, Path]]:
    from aerec.data.prepare import prepare_paths

    found = movielens_folds(folder)
    if folds > len(found):
        raise ValueError(
            f"{folder}: has {len(found)} canonical folds (u1.base/u1.test …), not {folds}"
        )
    out = []
    for name, base, test in found[:folds]:
        prepare_paths([base], data_dir / name, test=test, overwrite=True)
        out.append((name, data_dir / name))
    return out


def _kfold_datasets(dataset: Path, folds: int, seed: int,
                    data_dir: Path) -> list[tuple[str, Path]]:
    """Fold ``i`` of a seeded shuffle of all of ``dataset``'s ratings as the fixed test split
    of a prepared dataset (same ids, titles and scale), the rest as its ratings."""
    from aerec.data.ratings import Ratings, Titles
    from aerec.data.store import load_dataset, write_prepared

    ds = load_dataset(dataset)
    parts = [ds.matrix] + ([ds.test_matrix] if ds.test_matrix is not None else [])
    days = [ds.days] + ([ds.test_days] if ds.test_matrix is not None else [])
    coo = [m.tocoo() for m in parts]
    rows = np.concatenate([c.row for c in coo])
    cols = np.concatenate([c.col for c in coo])
    stars = np.concatenate([c.data for c in coo])
    # tocoo keeps CSR order, which is the order of the stored days
    all_days = None if any(d is None for d in days) else np.concatenate(
        [np.asarray(d) for d in days])
    if len(stars) < folds:
        raise ValueError(f"{dataset}: {len(stars)} ratings cannot make {folds} folds")
    fold_of = np.empty(len(stars), np.int64)
    fold_of[np.random.default_rng(seed).permutation(len(stars))] = np.arange(len(stars)) % folds
    user_ids, movie_ids = np.asarray(ds.user_ids), np.asarray(ds.movie_ids)
    titles = Titles(movie_ids, list(ds.titles), np.asarray(ds.years), ds.genres)
    scale = ds.scale

    def ratings(mask: np.ndarray) -> Ratings:
        return Ratings(user_ids[rows[mask]], movie_ids[cols[mask]], stars[mask],
                       None if all_days is None else all_days[mask], scale=scale)

    out = []
    for i in range(folds):
        name = f"fold{i + 1}"
        in_test = fold_of == i
        write_prepared(
            data_dir / name, ratings(~in_test), titles=titles, test=ratings(in_test),
            scale=scale, overwrite=True,
            manifest_extra={"cross_validation": {"source": str(dataset), "fold": i + 1,
                                                 "folds": folds, "seed": seed}},
        )
        out.append((name, data_dir / name))
    return out


def _fold_datasets(source: Path, folds: int, seed: int,
                   data_dir: Path) -> tuple[str, list[tuple[str, Path]]]:
    """The protocol's name and ``(fold name, prepared dataset)`` for each fold of ``source``."""
    if source.is_dir() and movielens_folds(source):
        return "movielens-100k", _movielens_datasets(source, folds, data_dir)
    if not (source / "manifest.json").is_file():
        if not source.exists():
            raise FileNotFoundError(f"{source}: no such dataset, folder or file")
        from aerec.data.prepare import prepare_paths

        prepare_paths([source], data_dir / "all", overwrite=True)
        source = data_dir / "all"
    return "k-fold", _kfold_datasets(source, folds, seed, data_dir)


def cross_validate(
    source: str | Path,
    preset: str | None = None,
    *,
    folds: int = 5,
    out: str | Path | None = None,
    seed: int = 0,
    k: int = 10,
    config: str | Path | None = None,
    time_budget: str | float | None = None,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
    callback: Any = None,
    **settings: Any,
) -> CrossValidation:
    """Train ``preset`` (``auto`` unless named; ``config``, ``time_budget`` and ``settings``
    as for :func:`aerec.api.fit`, applied to every fold) on ``folds`` folds of ``source`` and
    score each fold's test split beside the baselines.

    ``source`` is MovieLens 100K's folder (its canonical folds u1 … u{folds}), a prepared
    dataset or rating files (a k-fold split seeded by ``seed``; see the module docstring).
    ``out`` keeps every fold's data and run and gets ``crossval.json`` / ``crossval.csv``; an
    ``out`` that already holds runs is refused unless ``overwrite``. ``progress`` receives a line
    per step; ``callback`` the training events of every fold.
    """
    from aerec.api import run_config
    from aerec.train import train

    began = time.perf_counter()
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    say = progress or (lambda _line: None)
    resolved: TrainConfig = run_config(preset, config=config, time_budget=time_budget,
                                       **settings)
    model_name = preset or "auto"
    source = Path(source)
    temporary = tempfile.TemporaryDirectory(prefix="aerec-cv-") if out is None else None
    root = Path(temporary.name if temporary is not None else out)
    runs_dir, data_dir = root / "runs", root / "data"
    try:
        if runs_dir.exists() and any(runs_dir.iterdir()):
            if not overwrite:
                raise FileExistsError(
                    f"{runs_dir}: already holds cross-validation runs; choose another out or "
                    "pass overwrite=True (--force)"
                )
            shutil.rmtree(runs_dir)
        say(f"preparing {folds} folds of {source}")
        protocol, datasets = _fold_datasets(source, folds, seed, data_dir)
        results = []
        for name, dataset in datasets:
            say(f"{name}: training {model_name} ({resolved.describe()})")
            run_dir = runs_dir / name
            trained = train(dataset, run_dir, resolved, callback=callback)
            report = evaluate_runs([run_dir], k=k, names=[model_name], record=True)
            model_row = report.results[0]
            say(f"{name}: {trained.seconds:.1f} s, test RMSE {_text(model_row.rmse)}, "
                f"NDCG@{k} {_text(model_row.ndcg)}")
            results.append(FoldResult(name, str(dataset), str(run_dir), trained.seconds, report))
        outcome = CrossValidation(
            source=str(source), protocol=protocol, model=model_name,
            config=resolved.stored(), folds=results, k=k, seed=seed,
            out_dir=None if temporary is not None else str(root),
        )
        outcome.seconds = time.perf_counter() - began
        if temporary is None:
            outcome.files = [str(p) for p in outcome.write(root)]
        return outcome
    finally:
        if temporary is not None:
            temporary.cleanup()


def _text(value: float | None) -> str:
    return "—" if value is None or not math.isfinite(value) else f"{value:.4f}"
