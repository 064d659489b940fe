"""A configuration whose model cannot fit in memory is refused, with the estimate, before
anything is allocated.

Guards against: ``layers = [1000000000]`` (or a million factors) trying to allocate hundreds
of gigabytes and dying — or swapping the machine to a halt — instead of saying so; an estimate
that refuses runs that fit (it must not exceed what the model really holds).
"""

from __future__ import annotations

import pytest
import torch

from aerec.cli import main
from aerec.config import PRESETS, ConfigError, TrainConfig
from aerec.train import train
from aerec.train.memory import check_memory, estimate_memory
from aerec.train.trainer import build_model

from .conftest import N_MOVIES, N_USERS


@pytest.mark.parametrize("config", [
    PRESETS["seed"],
    PRESETS["item"],
    PRESETS["deep"],  # tied decoder
    PRESETS["user-centred"],
    TrainConfig(layers=(7,)),
])
def test_the_parameter_count_is_the_models(config):
    model = build_model(config, N_MOVIES, N_USERS)
    actual = sum(p.numel() for p in model.parameters())
    estimate = estimate_memory(config, N_USERS, N_MOVIES, 4000)
    assert estimate.parameters == actual
    # at least the weights, their gradients and the optimiser's moments
    assert estimate.bytes >= actual * 4 * (2 + (2 if config.optimizer != "sgd" else 1))


def test_bayesian_mf_counts_its_samples():
    config = PRESETS["bayesian-mf"]
    estimate = estimate_memory(config, N_USERS, N_MOVIES, 4000)
    d = config.factors
    assert estimate.parameters == config.kept_samples * (N_MOVIES * d + d + d * d + N_MOVIES)
    assert estimate.bytes > 2 * estimate.parameters * 8
    best = estimate_memory(PRESETS["best"], N_USERS, N_MOVIES, 4000)  # its largest member
    assert best.bytes == max(
        estimate_memory(c, N_USERS, N_MOVIES, 4000).bytes
        for c in (PRESETS["item-denoising"], PRESETS["item-denoising-300"],
                  PRESETS["audience-bayesian-mf"]))


def test_refused_past_the_available_memory_with_the_estimate():
    config = TrainConfig(layers=(64,), threads=1)
    need = estimate_memory(config, N_USERS, N_MOVIES, 4000).bytes
    assert check_memory(config, N_USERS, N_MOVIES, 4000, available=need).bytes == need
    with pytest.raises(ConfigError, match=r"needs about .* kB of memory .* but only 1\.0 kB is "
                                          r"available; choose smaller layers"):
        check_memory(config, N_USERS, N_MOVIES, 4000, available=1000)


@pytest.mark.parametrize("config, words", [
    (TrainConfig(layers=(10**9,), threads=1), "TB of memory (layers [1000000000] on 60 movies"),
    (TrainConfig(layers=(512, 10**8, 64), threads=1), "choose smaller layers"),
    (PRESETS["bayesian-mf"].replace(factors=10**5, threads=1), "choose fewer factors"),
    ("ensemble", "layers [1000000000]"),
])
def test_absurd_sizes_are_refused_before_allocating(lowrank_dir, tmp_path, monkeypatch,
                                                    config, words):
    def no_allocation(*args, **kwargs):
        raise AssertionError("allocated a model that cannot fit")

    if config == "ensemble":  # a member too big: refused before the first member trains
        member = tmp_path / "huge.toml"
        member.write_text('preset = "seed"\nlayers = [1000000000]\n')
        config = TrainConfig(members=("item", str(member)), threads=1)
    monkeypatch.setattr(torch.nn.Module, "__init__", no_allocation)
    with pytest.raises(ConfigError, match="is available") as refused:
        train(lowrank_dir, tmp_path / "run", config)
    assert words in str(refused.value) and "\n" not in str(refused.value)
    assert not (tmp_path / "run").exists()


def test_the_cli_refuses_in_one_line(lowrank_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(lowrank_dir), "--out", str(tmp_path / "run"), "--preset", "seed",
              "--layers", "1000000000"])
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: this configuration needs about ") and "TB of memory" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "epoch" not in captured.out  # refused before the run started
    assert not (tmp_path / "run").exists()
