"""The command line's steps as Python calls: ``prepare`` → ``fit`` → ``evaluate_run`` →
``Recommender`` (and ``cross_validate``), each the same function the CLI calls.

``import aerec`` exposes them at the top level (loaded on first use, so ``import aerec`` stays
cheap)::

    import aerec

    aerec.prepare(["ml-100k/u1.base"], "data/u1", test="ml-100k/u1.test")
    result = aerec.fit("data/u1", "runs/u1", preset="item")       # TrainResult
    print(aerec.evaluate_run("runs/u1"))                           # the table, with baselines
    rec = aerec.Recommender.load("runs/u1")
    rec.recommend({"Star Wars (1977)": 5, "Fargo (1996)": 4}, k=10)

The names differ from the modules they come from (``aerec.train``, ``aerec.evaluate``) on
purpose: a package attribute named like a subpackage is replaced by that subpackage as soon as
it is imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aerec.config import TrainConfig, resolve_config
from aerec.data.store import PreparedDataset, load_dataset

__all__ = ["fit", "prepare", "run_config"]

#: Settings ``auto`` keeps when it plans its models (everything else would be ignored).
AUTO_SETTINGS = frozenset({
    "time_budget", "threads", "device", "seed", "split_protocol", "test_fraction",
    "validation_fraction", "holdout_fraction", "split_seed",
})


def prepare(
    paths: str | Path | Sequence[str | Path],
    out: str | Path,
    *,
    test: str | Path | None = None,
    overwrite: bool = False,
    **options: Any,
) -> PreparedDataset:
    """``aerec data prepare PATH... --out OUT``: read rating files (any supported format, or a
    folder of them) into a prepared dataset directory, and open it.

    ``test`` is a fixed test split (MovieLens ``u1.test``, Netflix ``probe.txt``); ``options``
    go to :func:`aerec.data.prepare.prepare_paths` (``fmt``, ``titles``, ``scale``,
    ``skip_bad_lines``).
    """
    from aerec.data.prepare import prepare_paths

    listed = [paths] if isinstance(paths, str | Path) else list(paths)
    prepare_paths(listed, out, test=test, overwrite=overwrite, **options)
    return load_dataset(out)


def run_config(
    preset: str | None = None,
    *,
    config: str | Path | None = None,
    time_budget: str | float | None = None,
    **settings: Any,
) -> TrainConfig:
    """The configuration ``aerec train --preset PRESET --config FILE --time-budget T --NAME
    VALUE`` trains: the preset (``auto`` unless named), then the TOML file, then ``settings``
    (``epochs=20``, ``lr=3e-4``, … any :class:`~aerec.config.TrainConfig` field).

    ``time_budget`` is seconds or a duration (``"90s"``, ``"10m"``). Like the command line,
    ``auto`` refuses model settings instead of ignoring them.
    """
    from aerec.train.budget import parse_duration

    overrides = dict(settings)
    if time_budget is not None:
        overrides["time_budget"] = parse_duration(time_budget)
    resolved = resolve_config(preset, config, overrides)
    ignored = sorted(set(settings) - AUTO_SETTINGS)
    if resolved.model == "auto" and ignored:
        raise ValueError(
            f"{', '.join(ignored)} set(s) a model's training, but the preset auto chooses its "
            "models itself; name the model, e.g. preset='seed' (the published autoencoder)"
        )
    return resolved


def fit(
    dataset: str | Path | PreparedDataset,
    out: str | Path,
    preset: str | None = None,
    *,
    config: str | Path | None = None,
    time_budget: str | float | None = None,
    resume: bool = False,
    callback: Any = None,
    **settings: Any,
) -> Any:
    """``aerec train DATASET --out OUT``: train on a prepared dataset and write the run
    directory; returns the :class:`~aerec.train.TrainResult` (``best_val_rmse``,
    ``best_checkpoint``, ``warnings``, …).

    ``preset`` defaults to ``auto`` (the model chosen from the data's shape and
    ``time_budget``, 10 minutes unless given); ``seed`` is the published autoencoder. See
    :func:`run_config` for ``config``, ``time_budget`` and ``settings``; ``callback`` receives
    the training events (:mod:`aerec.train.events`).
    """
    from aerec.train import train

    resolved = run_config(preset, config=config, time_budget=time_budget, **settings)
    return train(dataset, out, resolved, resume=resume, callback=callback)
