"""The Python API at the top of the package: the README's "Python" block runs as written, the
names load lazily (``import aerec`` does not import PyTorch), and ``fit`` refuses what the
command line refuses."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO_ROOT

N_USERS, N_MOVIES = 150, 40


def _readme_python_block() -> str:
    """The first ```python block of the README's "## Python" section."""
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Python\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "the README's Python section has no ```python block"
    return blocks[0]


def _write_movielens_folder(folder) -> None:
    """A small MovieLens 100K-format folder (u1.base, u1.test, u.item) with learnable taste,
    and the two titles the README rates."""
    rng = np.random.default_rng(0)
    users, movies = rng.normal(size=(N_USERS, 2)), rng.normal(size=(N_MOVIES, 2))
    scores = 3.4 + users @ movies.T + rng.normal(scale=0.4, size=(N_USERS, N_MOVIES))
    stars = np.clip(np.rint(scores), 1, 5).astype(int)
    u, m = np.nonzero(rng.random((N_USERS, N_MOVIES)) < 0.4)
    in_test = rng.random(len(u)) < 0.2
    folder.mkdir()
    for name, keep in (("u1.base", ~in_test), ("u1.test", in_test)):
        lines = [f"{a + 1}\t{b + 1}\t{stars[a, b]}\t{881250949 + i}"
                 for i, (a, b) in enumerate(zip(u[keep], m[keep]))]
        (folder / name).write_text("\n".join(lines) + "\n")
    titles = {1: "Star Wars (1977)", 2: "Fargo (1996)"}
    items = [f"{i}|{titles.get(i, f'Movie {i} (1990)')}|01-Jan-1990||http://x|" + "|".join(
        ["0"] * 19) for i in range(1, N_MOVIES + 1)]
    (folder / "u.item").write_text("\n".join(items) + "\n")


def test_the_readme_python_block_runs_as_written(tmp_path, monkeypatch, capsys):
    """Guards the documentation: the block is executed exactly as the README shows it."""
    _write_movielens_folder(tmp_path / "ml-100k")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_readme_python_block(), "README.md (Python)", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "bias baseline" in printed and "popularity" in printed  # the evaluation table
    assert (tmp_path / "runs" / "u1" / "best.pt").is_file()
    assert len(namespace["rec"].recommend({"Star Wars (1977)": 5}, k=5).items) == 5


def test_import_aerec_is_cheap_and_the_names_load_on_first_use():
    code = ("import sys, aerec; before = 'torch' in sys.modules; aerec.fit; "
            "aerec.Recommender; print(before, 'torch' in sys.modules, sorted(aerec.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.startswith("False True")
    for name in ("prepare", "fit", "evaluate_run", "cross_validate", "Recommender"):
        assert f"'{name}'" in out


def test_the_top_level_names_do_not_hide_the_subpackages():
    """``aerec.train`` and ``aerec.evaluate`` stay the modules (a function of the same name
    would be replaced by its subpackage as soon as that is imported)."""
    import aerec
    import aerec.evaluate
    import aerec.train

    assert aerec.fit.__module__ == "aerec.api"
    assert aerec.evaluate_run is aerec.evaluate.evaluate_run
    assert hasattr(aerec.train, "train")
    with pytest.raises(AttributeError):
        aerec.no_such_name  # noqa: B018


def test_fit_refuses_model_settings_for_auto(lowrank_dir, tmp_path):
    import aerec

    with pytest.raises(ValueError, match="auto chooses its models"):
        aerec.fit(lowrank_dir, tmp_path / "run", epochs=3)
    with pytest.raises(ValueError, match="not a duration"):
        aerec.fit(lowrank_dir, tmp_path / "run", time_budget="soon")
    config = aerec.run_config("seed", time_budget="2m", epochs=3, threads=1)
    assert (config.epochs, config.time_budget, config.threads) == (3, 120.0, 1)
