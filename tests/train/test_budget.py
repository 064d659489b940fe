"""Time budgets (``--time-budget``): parsing, the epoch clock, and whole runs cut by a budget.

Guards against: a duration typo read as something else, a loop that starts an epoch it cannot
finish, a budgeted run that ends without a usable checkpoint or without saying what it skipped,
and a Bayesian chain whose burn-in or thinning ignores the sweeps the budget allows.
No wall-clock assertions: each budget here is far below what the configured work needs, so the
runs must stop by the budget on any machine.
"""

from __future__ import annotations

import math
import time

import pytest

from aerec.config import TrainConfig
from aerec.train import load_checkpoint, train
from aerec.train.budget import Deadline, EpochClock, format_duration, parse_duration
from aerec.train.events import StageStarted


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90.0), ("10m", 600.0), ("1h", 3600.0), ("1h30m", 5400.0), ("2.5m", 150.0),
    ("45", 45.0), (" 2 min ", 120.0), (30, 30.0),
])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "ten minutes", "5x", "0s", "-3m", "m"])
def test_parse_duration_refuses_what_is_not_a_positive_duration(text):
    with pytest.raises(ValueError, match="time budget"):
        parse_duration(text)


def test_format_duration():
    assert format_duration(75) == "1m 15s"
    assert format_duration(3600) == "1h"
    assert format_duration(5.25) == "5.2s"


def test_epoch_clock_always_allows_the_first_epoch_then_uses_the_slowest_recent_one():
    clock = EpochClock(Deadline(time.perf_counter() + 0.5))
    assert clock.next_fits()  # a run always trains one epoch
    clock.record(0.1)
    assert clock.next_fits()
    clock.record(10.0)
    clock.record(0.1)
    assert not clock.next_fits()  # the slowest of the last three does not fit in 0.5 s
    assert clock.affordable(100) == 0
    unlimited = EpochClock(None)
    unlimited.record(1e9)
    assert unlimited.next_fits() and unlimited.affordable(7) == 7


def test_deadline_shares_keep_the_reserve_back():
    deadline = Deadline.after(100.0)
    half = deadline.share(0.5, reserve=20.0)
    assert 39.0 < half.remaining() <= 40.0
    assert not Deadline.after(0).limited and Deadline().share(0.5).remaining() == math.inf


def test_budget_ends_an_autoencoder_run_with_a_checkpoint_and_a_report(lowrank_dir, tmp_path,
                                                                      small_config):
    config = small_config.replace(epochs=100_000, time_budget=2.0)
    result = train(lowrank_dir, tmp_path / "run", config)
    assert 1 <= result.epochs_completed < 100_000
    budget = result.notes["budget"]
    assert budget["seconds"] == 2.0
    assert "the budget ended training" in budget["trained"][0]
    saved = load_checkpoint(result.best_checkpoint)
    assert saved.epoch == result.best_epoch  # the best epoch was written before stopping
    assert load_checkpoint(result.last_checkpoint).epoch == result.epochs_completed
    assert result.metrics_path.read_text().count("\n") == result.epochs_completed + 1


def test_budget_plans_a_bayesian_chain_and_refit(lowrank_dir, tmp_path):
    config = TrainConfig(model="bayesian-mf", factors=3, epochs=1_000_000, burn_in=50,
                         kept_samples=8, refit=True, threads=1, time_budget=3.0)
    stages = []
    result = train(lowrank_dir, tmp_path / "bmf", config,
                   callback=lambda e: stages.append(e.stage) if isinstance(e, StageStarted)
                   else None)
    budget = result.notes["budget"]
    sweeps = result.epochs_completed
    assert 1 < sweeps < 1_000_000 and "the budget ended the chain" in budget["trained"][0]
    burn_in = int(budget["trained"][0].rsplit("burn-in ", 1)[1])
    assert burn_in <= max(1, sweeps // 5) + 1  # planned from the sweeps that fit, not 50
    model = load_checkpoint(result.best_checkpoint).model
    assert 1 <= model.samples <= 8
    # the refit either ran (and says how many sweeps) or was skipped with a reason
    assert "refit" in stages or any("refit" in s for s in budget["skipped"])


def test_an_ensemble_out_of_time_skips_the_members_left_and_says_so(lowrank_dir, tmp_path):
    from .conftest import USER_MEMBER

    member = tmp_path / "user.toml"
    USER_MEMBER.replace(epochs=100_000).save_toml(member)
    config = TrainConfig(members=(str(member), str(member), str(member)), threads=1,
                         time_budget=1.0)
    result = train(lowrank_dir, tmp_path / "ens", config)
    budget = result.notes["budget"]
    # the first member always trains (a run ends with a model); what did not fit is named
    assert budget["trained"] and budget["trained"][0].startswith(str(member))
    assert any(s.startswith("member ") for s in budget["skipped"])
    model = load_checkpoint(result.best_checkpoint).model
    assert 1 <= len(model.members) < 3
    assert (tmp_path / "ens" / "members.csv").read_text().count("\n") == len(model.members) + 1
