"""aerec: an autoencoder movie recommender for Netflix Prize-style rating data.

The whole job from Python, each step the function the command line calls (README "Python")::

    import aerec

    aerec.prepare(["ml-100k/u1.base"], "data/u1", test="ml-100k/u1.test")
    result = aerec.fit("data/u1", "runs/u1", preset="item")    # aerec train
    print(aerec.evaluate_run("runs/u1"))                        # aerec evaluate
    rec = aerec.Recommender.load("runs/u1")                     # aerec recommend
    rec.recommend({"Star Wars (1977)": 5}, k=10)
    aerec.cross_validate("ml-100k", preset="item", folds=5)     # aerec cross-validate

The names are loaded on first use, so ``import aerec`` does not import PyTorch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name → the module that defines it.
_EXPORTS = {
    "prepare": "aerec.api",
    "fit": "aerec.api",
    "run_config": "aerec.api",
    "evaluate_run": "aerec.evaluate",
    "evaluate_runs": "aerec.evaluate",
    "cross_validate": "aerec.crossval",
    "Recommender": "aerec.recommend",
    "quality_warning": "aerec.quality",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'aerec' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
