"""Hyper-parameter search on the validation split, within a time budget.

:func:`tune` trains a series of configurations (trials) on a prepared dataset — the first is
the search space's base preset, the rest random draws from the space (seeded) — and keeps the
one with the lowest validation RMSE. Every trial is an ordinary run (:func:`aerec.train.train`)
whose model selection and early stopping see only the validation split carved from the
training ratings; the test split is never read. Output folder::

    trials.csv        trial, val_rmse, best_epoch, epochs, seconds, changes (vs the base)
    trials.jsonl      one JSON object per trial: the same plus the full configuration
    best.toml         the best configuration (``aerec train DATA --config best.toml``)
    trials/NNN/       each trial's run directory (checkpoints kept for the best trial only)

A trial is started only while the budget is expected to allow it (elapsed time plus the
longest trial so far); ``trials`` caps the count.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aerec.config import PRESETS, TrainConfig, write_text_atomic
from aerec.jsonable import plain

__all__ = ["SPACES", "SearchSpace", "Trial", "TuneResult", "tune"]


@dataclass(frozen=True)
class SearchSpace:
    """A base preset and, per setting, the values a random trial draws from (uniformly)."""

    base: str
    choices: Mapping[str, tuple[Any, ...]]
    description: str = ""

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """One random assignment of every setting in the space."""
        return {name: values[int(rng.integers(len(values)))] for name, values in
                self.choices.items()}


#: Named search spaces (``aerec tune --space NAME``).
SPACES: dict[str, SearchSpace] = {
    "item": SearchSpace(
        "item",
        {
            "layers": ((300,), (500,), (700,)),
            "l2": (40.0, 70.0, 100.0, 150.0, 250.0),
            "lr": (1e-3, 3e-3, 6e-3),
            "input_dropout": (0.0, 0.0, 0.25, 0.5),
            "activation": ("sigmoid", "sigmoid", "tanh"),
            "steps": (250, 400),
        },
        "item-based AutoRec: width, L2, learning rate, input dropout, activation",
    ),
    "user": SearchSpace(
        "user-centred",
        {
            "layers": ((300,), (500,), (512, 128)),
            "l2": (30.0, 100.0, 300.0),
            "lr": (1e-3, 3e-3),
            "centring": ("none", "biases", "biases"),
            "dropout": (0.0, 0.2),
            "input_dropout": (0.0, 0.25),
        },
        "user-based AutoRec: width/depth, L2, learning rate, centring, dropout",
    ),
    "deep": SearchSpace(
        "deep",
        {
            "lr": (0.002, 0.005, 0.01),
            "code_dropout": (0.5, 0.8),
            "refeed": (0, 1),
            "layers": ((512, 512, 1024), (256, 256, 512)),
        },
        "DeepRecommender: learning rate, code dropout, re-feeding, widths",
    ),
    "bayesian": SearchSpace(
        "bayesian-mf",
        {
            "factors": (16, 32, 64),
            "noise_precision": (1.5, 2.0, 2.5, 3.0),
            "noise_scales": (0.0, 2.0, 5.0, 10.0),
            "audience_prior": (False, True),
            "epochs": (300, 500),
        },
        "Bayesian factorisation: width, noise precision, robust noise scales, audience prior, "
        "sweeps",
    ),
}


@dataclass
class Trial:
    """One trained configuration and what it scored on the validation split."""

    number: int
    changes: dict[str, Any]
    config: TrainConfig
    val_rmse: float
    best_epoch: int
    epochs: int
    seconds: float
    run_dir: Path
    error: str = ""

    def row(self) -> dict[str, Any]:
        """The ``trials.csv`` / ``trials.jsonl`` record (plain types)."""
        return {
            "trial": self.number,
            "val_rmse": None if not math.isfinite(self.val_rmse) else round(self.val_rmse, 6),
            "best_epoch": self.best_epoch,
            "epochs": self.epochs,
            "seconds": round(self.seconds, 2),
            "changes": plain(self.changes),
            "error": self.error,
        }


@dataclass
class TuneResult:
    """All trials, the best one (lowest validation RMSE) and where the files are."""

    trials: list[Trial]
    best: Trial
    space: str
    out_dir: Path
    best_config_path: Path
    trials_path: Path
    seconds: float
    notes: dict = field(default_factory=dict)


def tune(
    dataset: str | Path,
    out_dir: str | Path,
    *,
    budget_minutes: float,
    trials: int | None = None,
    space: str | SearchSpace = "item",
    seed: int = 0,
    overrides: Mapping[str, Any] | None = None,
    on_trial: Callable[[Trial], None] | None = None,
) -> TuneResult:
    """Random search over ``space`` on ``dataset`` for ``budget_minutes``; see the module
    docstring. ``overrides`` apply to every trial (e.g. ``{"threads": 2}``, a split setting).
    ``on_trial`` is called after each trial. Raises ``FileExistsError`` when ``out_dir``
    already holds a search."""
    from aerec.data.store import load_dataset
    from aerec.train import train

    if budget_minutes <= 0:
        raise ValueError(f"budget_minutes must be positive, got {budget_minutes}")
    if trials is not None and trials < 1:
        raise ValueError(f"trials must be at least 1, got {trials}")
    search = SPACES[space] if isinstance(space, str) else space
    if isinstance(space, str) and space not in SPACES:
        raise ValueError(f"unknown search space {space!r}; known: {', '.join(SPACES)}")
    out_dir = Path(out_dir)
    trials_csv = out_dir / "trials.csv"
    if trials_csv.exists():
        raise FileExistsError(f"{out_dir}: already holds a search (trials.csv); choose another")
    out_dir.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(dataset)
    base = PRESETS[search.base].replace(**dict(overrides or {}))
    rng = np.random.default_rng(seed)
    began = time.perf_counter()
    budget = budget_minutes * 60.0
    done: list[Trial] = []
    seen: set[str] = set()
    best: Trial | None = None
    while trials is None or len(done) < trials:
        elapsed = time.perf_counter() - began
        longest = max((t.seconds for t in done), default=0.0)
        if done and elapsed + longest > budget:
            break
        changes = {} if not done else search.sample(rng)
        key = json.dumps(plain(changes), sort_keys=True)
        if key in seen:  # a repeat draw: try another (bounded, small spaces run dry)
            if len(seen) >= _space_size(search) + 1:
                break
            continue
        seen.add(key)
        number = len(done) + 1
        run_dir = out_dir / "trials" / f"{number:03d}"
        config = base.replace(**changes)
        start = time.perf_counter()
        try:
            result = train(ds, run_dir, config)
            trial = Trial(number, changes, config, result.best_val_rmse, result.best_epoch,
                          result.epochs_completed, time.perf_counter() - start, run_dir)
        except (ArithmeticError, RuntimeError, ValueError) as exc:  # a diverged trial
            trial = Trial(number, changes, config, math.nan, 0, 0,
                          time.perf_counter() - start, run_dir, error=str(exc).split("\n")[0])
        done.append(trial)
        if math.isfinite(trial.val_rmse) and (best is None or trial.val_rmse < best.val_rmse):
            if best is not None:
                _drop_checkpoints(best.run_dir)
            best = trial
            config.save_toml(out_dir / "best.toml")
        else:
            _drop_checkpoints(run_dir)
        _write_trials(out_dir, done)
        if on_trial is not None:
            on_trial(trial)
    if best is None:
        raise RuntimeError(f"{out_dir}: no trial finished with a finite validation RMSE")
    name = space if isinstance(space, str) else search.base
    return TuneResult(done, best, name, out_dir, out_dir / "best.toml", trials_csv,
                      time.perf_counter() - began)


def _space_size(space: SearchSpace) -> int:
    return int(np.prod([len(set(map(repr, v))) for v in space.choices.values()]))


def _drop_checkpoints(run_dir: Path) -> None:
    """Free the disk a losing trial's checkpoints take (its metrics and config stay)."""
    for path in run_dir.glob("*.pt"):
        path.unlink(missing_ok=True)
    members = run_dir / "members"
    if members.is_dir():
        shutil.rmtree(members, ignore_errors=True)


def _write_trials(out_dir: Path, done: list[Trial]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["trial", "val_rmse", "best_epoch", "epochs", "seconds", "changes", "error"])
    for t in done:
        row = t.row()
        writer.writerow([
            row["trial"], "" if row["val_rmse"] is None else f"{row['val_rmse']:.6f}",
            row["best_epoch"], row["epochs"], f"{row['seconds']:.1f}",
            json.dumps(row["changes"], sort_keys=True), row["error"],
        ])
    write_text_atomic(out_dir / "trials.csv", buffer.getvalue())
    lines = [json.dumps({**t.row(), "config": t.config.to_dict()}, sort_keys=True) for t in done]
    write_text_atomic(out_dir / "trials.jsonl", "\n".join(lines) + "\n")
