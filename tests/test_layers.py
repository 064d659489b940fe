"""The package's layers (docs: README "Layout"): who may import whom, and no import cycles.

Read from the source (every ``import`` statement, module level and inside functions), so a
lazy import that closes a cycle or crosses a layer fails here too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "aerec").rglob("*.py"):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _imports(name: str) -> set[str]:
    """The aerec modules ``name`` imports (a package it sits in is not counted: importing a
    sibling runs that package's ``__init__`` first either way)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    out = set()
    for module in found:
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in MODULES and prefix != name and not name.startswith(prefix + "."):
                out.add(prefix)
    return out


GRAPH = {name: _imports(name) for name in MODULES}


def _reach(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in GRAPH[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_the_graph_is_read():
    assert "aerec.train.loop" in GRAPH["aerec.train.run"]
    assert "aerec.checkpoint" in GRAPH["aerec.recommend.recommender"]


def test_no_import_cycles():
    cycles = sorted(name for name in MODULES if name in _reach(name))
    assert not cycles, f"modules on an import cycle: {cycles}"


@pytest.mark.parametrize("layer, forbidden", [
    ("aerec.data", ("aerec.model", "aerec.train", "aerec.recommend", "aerec.serve", "aerec.cli",
                    "aerec.checkpoint", "aerec.evaluate")),
    # the models may know the rating scale's type (aerec.data.ratings), never a reader
    ("aerec.model", ("aerec.train", "aerec.recommend", "aerec.serve", "aerec.cli",
                     "aerec.checkpoint", "aerec.config", "aerec.evaluate", "aerec.data.store",
                     "aerec.data.prepare", "aerec.data.netflix", "aerec.data.movielens",
                     "aerec.data.generic", "aerec.data.splits", "aerec.data.synth")),
    ("aerec.checkpoint", ("aerec.train", "aerec.recommend", "aerec.serve", "aerec.cli")),
    ("aerec.config", ("aerec.train", "aerec.recommend", "aerec.serve", "aerec.cli")),
    ("aerec.recommend", ("aerec.train", "aerec.serve", "aerec.cli", "aerec.evaluate")),
    ("aerec.serve", ("aerec.train", "aerec.cli", "aerec.evaluate")),
    ("aerec.train", ("aerec.recommend", "aerec.serve", "aerec.cli")),
])
def test_layers_import_only_what_is_below_them(layer, forbidden):
    """E.g. serving never imports training (the checkpoint format sits below both), and the
    models know nothing of files, configuration or training."""
    members = [m for m in MODULES if m == layer or m.startswith(layer + ".")]
    crossing = sorted(
        f"{m} → {t}" for m in members for t in _reach(m)
        if any(t == f or t.startswith(f + ".") for f in forbidden)
    )
    assert not crossing


def test_the_run_loop_never_asks_which_kind_it_runs():
    """The loop, run entry and evaluator talk to the families and the model contract only."""
    for name in ("aerec.train.loop", "aerec.train.run", "aerec.evaluate",
                 "aerec.recommend.recommender"):
        text = MODULES[name].read_text()
        for switch in ("isinstance(model", "hasattr(model", "getattr(model", ".orientation ==",
                       'model == "bayesian-mf"', "config.members"):
            assert switch not in text, f"{name} switches on the kind: {switch!r}"
