"""Data-parallel training on ``torch.distributed`` with 2 gloo processes on loopback.

Guards against: a 2-process run that is not equivalent to one process with the same global
batch (user- and item-based, step for step and in test RMSE); the big matrices' gradients
travelling as dense all-reduces instead of merged row records (or merged wrongly); ranks that write or report twice; a resume that does not continue
the job; a killed rank that leaves the other waiting for ever instead of stopping it with a clear
message; a family that cannot train data-parallel being run so anyway.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from aerec.config import TrainConfig
from aerec.evaluate import evaluate_run
from aerec.model.sparse_ops import RowGradient
from aerec.train import train
from aerec.train.distributed import concat_records
from aerec.train.metrics_log import read_metrics_csv

#: Small networks trained to a plateau in a few seconds on the 200 × 50 low-rank fixture.
USER = TrainConfig(layers=(32, 8), activation="selu", output_activation="identity",
                   dropout=0.1, lr=0.01, batch_size=32, epochs=12, threads=1,
                   clip_predictions=True)
ITEM = TrainConfig(orientation="item", layers=(16,), activation="sigmoid",
                   output_activation="identity", dropout=0.0, input_dropout=0.25, lr=0.01,
                   l2=10.0, batch_size=16, epochs=12, threads=1, clip_predictions=True,
                   fold_in_scale=1.0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node 2 -m aerec ARGS`` (gloo on loopback)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "AEREC_DIST_TIMEOUT": "120"}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node",
         "2", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}",
         "-m", "aerec", *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


def _test_rmse(run: Path) -> float:
    report = evaluate_run(run)
    return next(r.rmse for r in report.results if r.kind == "model")


@pytest.mark.parametrize("config", [USER, ITEM], ids=["user-based", "item-based"])
def test_two_processes_equal_one_within_the_seed_spread(lowrank_dir, tmp_path, config):
    """The 2-process job is one more draw of the same training: its test RMSE lies within the
    spread of 1-process runs over 3 seeds (widened by that spread: dropout masks differ)."""
    single = [
        _test_rmse(train(lowrank_dir, tmp_path / f"one-{seed}", config.replace(seed=seed))
                   .run_dir)
        for seed in range(3)
    ]
    config_file = tmp_path / "c.toml"
    config.save_toml(config_file)
    done = _torchrun("train", str(lowrank_dir), "--config", str(config_file), "--out",
                     str(tmp_path / "two"))
    assert done.returncode == 0, done.stderr[-3000:] + done.stdout[-3000:]
    two = _test_rmse(tmp_path / "two")
    low, high = min(single), max(single)
    spread = max(high - low, 0.005)
    assert low - spread <= two <= high + spread, (single, two)
    # one process reported and wrote: one summary, one metrics row per epoch
    assert done.stdout.count("run directory") == 1, done.stdout
    rows = read_metrics_csv(tmp_path / "two" / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(1, config.epochs + 1))


def test_a_job_resumes_from_its_last_checkpoint(lowrank_dir, tmp_path):
    config_file = tmp_path / "c.toml"
    USER.replace(epochs=2).save_toml(config_file)
    run = tmp_path / "run"
    first = _torchrun("train", str(lowrank_dir), "--config", str(config_file), "--out",
                      str(run))
    assert first.returncode == 0, first.stderr[-3000:]
    again = _torchrun("train", str(lowrank_dir), "--out", str(run), "--resume", "--epochs",
                      "4")
    assert again.returncode == 0, again.stderr[-3000:] + again.stdout[-3000:]
    rows = read_metrics_csv(run / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]


def _rank(rank: int, port: int, dataset: str, out: str, result: str) -> None:
    """One rank of a 2-process job started by hand (as torchrun would); rank 1 dies after its
    second epoch (only rank 0 reports, so rank 1 is stopped from inside the run loop)."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                      AEREC_DIST_TIMEOUT="30")
    from aerec.train.events import EpochFinished
    from aerec.train.loop import RunContext

    if rank == 1:
        def announce(self: RunContext, event: object) -> None:
            if isinstance(event, EpochFinished) and event.metrics.epoch == 2:
                os._exit(3)

        RunContext.announce = announce  # type: ignore[method-assign]
    try:
        train(dataset, out, USER.replace(epochs=50))
        Path(result).write_text("finished")
    except Exception as exc:  # noqa: BLE001 - the message is what the test checks
        Path(result).write_text(f"{type(exc).__name__}: {exc}")


def test_a_killed_rank_stops_the_job_with_a_clear_message(lowrank_dir, tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    port = _free_port()
    results = [tmp_path / f"rank{r}.txt" for r in range(2)]
    ranks = [context.Process(target=_rank, args=(r, port, str(lowrank_dir),
                                                 str(tmp_path / "run"), str(results[r])))
             for r in range(2)]
    started = time.perf_counter()
    for p in ranks:
        p.start()
    for p in ranks:
        p.join(timeout=180)
    assert all(not p.is_alive() for p in ranks), "a rank is still waiting"
    assert ranks[1].exitcode == 3
    said = results[0].read_text()
    assert said.startswith("PeerLost") and "another rank stopped" in said, said
    assert "--resume" in said
    assert time.perf_counter() - started < 150


def test_families_that_train_on_one_machine_are_refused(lowrank_dir, tmp_path):
    config_file = tmp_path / "c.toml"
    TrainConfig(model="bayesian-mf", epochs=20, burn_in=5, kept_samples=4,
                threads=1).save_toml(config_file)
    done = _torchrun("train", str(lowrank_dir), "--config", str(config_file), "--out",
                     str(tmp_path / "run"))
    assert done.returncode != 0
    assert "trains on one machine" in done.stdout + done.stderr


def _record(rng: np.random.Generator, n_rows: int, width: int, batch: int,
            nnz: int) -> RowGradient:
    target = np.sort(rng.integers(0, n_rows, nnz))
    colptr = np.zeros(n_rows + 1, np.int64)
    colptr[1:] = np.cumsum(np.bincount(target, minlength=n_rows))
    return RowGradient(torch.from_numpy(colptr), torch.from_numpy(rng.integers(0, batch, nnz)),
                       torch.from_numpy(rng.normal(size=nnz).astype(np.float32)),
                       torch.from_numpy(rng.normal(size=(batch, width)).astype(np.float32)))


def test_merged_records_carry_the_sum_of_their_parts():
    rng = np.random.default_rng(0)
    parts = [_record(rng, 40, 6, batch, nnz) for batch, nnz in [(5, 30), (3, 12), (7, 0)]]
    merged = concat_records(parts, 40)
    expected = sum(part.dense() for part in parts)
    torch.testing.assert_close(merged.dense(), expected, rtol=1e-5, atol=1e-6)
    assert merged.source.shape == (15, 6) and merged.src_rows.numel() == 42
    # entries of one weight row stay in part order: the merge is the same on every rank
    assert torch.equal(concat_records(parts, 40).src_rows, merged.src_rows)


def _matrices() -> tuple[sp.csr_matrix, sp.csr_matrix]:
    rng = np.random.default_rng(7)
    dense = np.where(rng.random((120, 40)) < 0.3, rng.integers(1, 6, (120, 40)), 0)
    matrix = sp.csr_matrix(dense.astype(np.float32))
    held = rng.random(matrix.nnz) < 0.2
    coo = matrix.tocoo()
    part = [sp.csr_matrix((coo.data[m], (coo.row[m], coo.col[m])), shape=matrix.shape)
            for m in (~held, held)]
    return part[0], part[1]


#: Deterministic training (no dropout): two ranks must follow one process step for step.
STEPPED = {
    "user": USER.replace(dropout=0.0, epochs=3, batch_size=16),
    "item": ITEM.replace(input_dropout=0.0, epochs=3, batch_size=8),
    # one weight read and written by both ends (its two records merge), and a dense re-feed
    # step after each step
    "tied": USER.replace(dropout=0.0, epochs=3, batch_size=16, tied=True, refeed=1),
    # an optimiser without row updates: every gradient all-reduced densely
    "sgd": USER.replace(dropout=0.0, epochs=3, batch_size=16, optimizer="sgd", lr=0.05,
                        momentum=0.9),
}
#: How many weights travel as row records in each of those runs' steps.
ROW_WEIGHTS = {"user": {2}, "item": {2}, "tied": {1}, "sgd": set()}


def _trained(case: str, ranks) -> tuple[dict, float]:
    from aerec.train.trainer import Trainer, build_model

    config = STEPPED[case]
    train_matrix, validation = _matrices()
    model = build_model(config, train_matrix.shape[1], train_matrix.shape[0], clip=(1.0, 5.0))
    trainer = Trainer(model, config, train_matrix, validation, clip=(1.0, 5.0), ranks=ranks)
    for _ in range(config.epochs):
        trainer.train_epoch()
    return ({k: v.clone() for k, v in model.state_dict().items()}, trainer.validate()[1])


def _stepping_rank(rank: int, port: int, orientation: str, result: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                      AEREC_DIST_TIMEOUT="60")
    torch.set_num_threads(1)
    from aerec.train import distributed

    gathered = []
    gather = distributed._gather_records

    def counting(*args, **kwargs):
        merged = gather(*args, **kwargs)
        gathered.append(len(merged))
        return merged

    distributed._gather_records = counting
    ranks = distributed.setup(torch.device("cpu"))
    state, rmse = _trained(orientation, ranks)
    torch.save({"state": state, "rmse": rmse, "row_exchanges": gathered}, result)
    distributed.close()
    # Leave without the interpreter's teardown: in this hand-made harness (the rank hosting
    # the store is a spawned child) a C++ thread destructor sometimes aborts the exit after
    # everything is done (2–10 % of runs, not seen under torchrun); the exit code must say
    # whether the work above finished.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


@pytest.mark.parametrize("orientation", list(STEPPED))
def test_two_ranks_take_the_one_process_steps(tmp_path, orientation):
    """Without dropout the job is deterministic: after 3 epochs every parameter of each rank
    equals the 1-process run's (float summation order aside), the validation RMSE too, and
    with Adam the big matrices travelled as row records at every step."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    port = _free_port()
    results = [str(tmp_path / f"rank{r}.pt") for r in range(2)]
    ranks = [context.Process(target=_stepping_rank, args=(r, port, orientation, results[r]))
             for r in range(2)]
    for p in ranks:
        p.start()
    torch.set_num_threads(1)
    expected, expected_rmse = _trained(orientation, ranks=__import__(
        "aerec.train.distributed", fromlist=["ALONE"]).ALONE)
    for p in ranks:
        p.join(timeout=120)
    assert [p.exitcode for p in ranks] == [0, 0]
    for result in results:
        got = torch.load(result)
        assert got["state"].keys() == expected.keys()
        for name, value in expected.items():
            torch.testing.assert_close(got["state"][name], value, rtol=1e-4, atol=2e-5,
                                       msg=lambda m, name=name: f"{name}: {m}")
        assert abs(got["rmse"] - expected_rmse) < 1e-4
        assert set(got["row_exchanges"]) == ROW_WEIGHTS[orientation], got["row_exchanges"]
