"""``aerec train`` end to end through typer: options reach the config (and none is silently
ignored), resume works, divergence exits non-zero with the message, the per-epoch output reads
well in a log and on a terminal, and the summary names the best epoch with its own metrics."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest
import typer
from typer.testing import CliRunner

from aerec.cli.train import register
from aerec.train import load_checkpoint
from aerec.train.metrics_log import read_metrics_csv


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def _root() -> None:
        """Test app holding only the train command."""

    register(app)
    return app


def test_train_resume_and_divergence(lowrank_dir, tmp_path):
    runner = CliRunner()
    app = _app()
    run = tmp_path / "run"
    common = [str(lowrank_dir), "--out", str(run), "--threads", "1"]
    first = runner.invoke(app, ["train", *common, "--preset", "seed", "--epochs", "2",
                                "--layers", "16,8,4",
                                "--lr", "0.003", "--batch-size", "64", "--activation", "selu"])
    assert first.exit_code == 0, first.output
    out = _flat(first.output)
    best = load_checkpoint(run / "best.pt").epoch
    assert f"best: epoch {best} of 2 (validation RMSE" in out
    assert f"epoch {best}: training loss" in out and "predicting the training mean" in out
    ckpt = load_checkpoint(run / "last.pt")
    assert ckpt.config.layers == (16, 8, 4) and ckpt.config.activation == "selu"
    assert ckpt.config.lr == 0.003 and ckpt.config.batch_size == 64

    resumed = runner.invoke(app, ["train", *common, "--epochs", "3", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert len(read_metrics_csv(run / "metrics.csv")) == 3
    assert load_checkpoint(run / "last.pt").config.layers == (16, 8, 4)

    diverged = runner.invoke(app, ["train", str(lowrank_dir), "--out", str(tmp_path / "bad"),
                                   "--preset", "seed", "--layers", "16,8,4", "--lr", "1000",
                                   "--threads", "1"])
    assert diverged.exit_code == 1
    assert "training diverged" in diverged.output


def test_auto_refuses_model_options_and_reads_a_time_budget(lowrank_dir, tmp_path):
    runner = CliRunner()
    app = _app()
    refused = runner.invoke(app, ["train", str(lowrank_dir), "--out", str(tmp_path / "a"),
                                  "--epochs", "3", "--lr", "0.01"])
    assert refused.exit_code == 2
    said = _flat(refused.output)
    assert "--epochs, --lr" in said and "--preset seed" in said
    assert not (tmp_path / "a").exists()
    bad = runner.invoke(app, ["train", str(lowrank_dir), "--out", str(tmp_path / "b"),
                              "--time-budget", "ten minutes"])
    assert bad.exit_code == 2 and "is not a duration" in _flat(bad.output)
    ok = runner.invoke(app, ["train", str(lowrank_dir), "--out", str(tmp_path / "c"),
                             "--time-budget", "2m", "--threads", "1"])
    assert ok.exit_code == 0, ok.output
    out = _flat(ok.output)
    # an ensemble run names each member and its stages, and sums up every member
    assert "auto: small data: the best ensemble" in out
    assert "member 1/3: item-denoising" in out and "member 3/3: audience-bayesian-mf" in out
    assert "ensemble of 3" in out and "validation RMSE" in out
    assert "time budget 2m: used" in out
    assert "metrics.csv" not in out.split("run directory")[1]  # only files that exist
    assert (tmp_path / "c" / "learning_curve.png").is_file()


def _flat(text: str) -> str:
    """CLI output as one line: rich wraps long messages inside boxes."""
    return " ".join(text.replace("│", " ").split())


def _one_line_error(capsys, argv) -> str:
    from aerec.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "Traceback" not in err
    assert len(err.splitlines()) == 1, err
    return err


SMALL_RUN = ["--preset", "seed", "--layers", "8,4", "--epochs", "1", "--threads", "1"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only permission bits")
def test_a_read_only_out_is_one_line_naming_it(lowrank_dir, tmp_path, capsys):
    parent = tmp_path / "locked"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        out = parent / "run"
        err = _one_line_error(capsys, ["train", str(lowrank_dir), "--out", str(out), *SMALL_RUN])
        assert f"--out {out}: cannot write a run directory there" in err
        assert "Permission denied" in err
    finally:
        parent.chmod(0o755)


def test_an_out_that_cannot_be_a_directory_is_one_line(lowrank_dir, tmp_path, capsys):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    out = a_file / "run"  # mkdir fails with ENOTDIR, an OSError no handler knew
    err = _one_line_error(capsys, ["train", str(lowrank_dir), "--out", str(out), *SMALL_RUN])
    assert f"--out {out}: cannot write a run directory there" in err
    err = _one_line_error(capsys, ["train", str(lowrank_dir), "--out", str(a_file), *SMALL_RUN])
    assert f"--out {a_file} is a file" in err


def test_a_file_system_that_turns_read_only_mid_run_is_one_line(lowrank_dir, tmp_path,
                                                                 capsys, monkeypatch):
    """EROFS / EACCES / ENOSPC raised while the run writes (after the --out check passed)."""
    import aerec.cli.train as cli_train

    out = tmp_path / "run"
    for number, reason in ((errno.EROFS, "Read-only file system"),
                           (errno.ENOSPC, "No space left on device")):
        def failing_train(*args, number=number, reason=reason, **kwargs):
            raise OSError(number, reason, str(out / "config.toml"))

        monkeypatch.setattr(cli_train, "train", failing_train)
        err = _one_line_error(capsys, ["train", str(lowrank_dir), "--out", str(out),
                                       *SMALL_RUN])
        assert err == f"error: {out / 'config.toml'}: {reason}"


def test_train_removes_temporaries_a_killed_writer_left(lowrank_dir, tmp_path, capsys):
    from aerec.cli import main

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    out = tmp_path / "run"
    out.mkdir()
    stale = out / f".best.pt.{gone.pid}.k1ll3d00.tmp"
    stale.write_bytes(b"PK\x03\x04 half a checkpoint")
    kept = out / f".best.pt.{os.getppid()}.l1v3w000.tmp"  # its writer is alive: not ours
    kept.write_bytes(b"PK\x03\x04 being written")
    try:
        main(["train", str(lowrank_dir), "--out", str(out), *SMALL_RUN])
    except SystemExit as exc:
        assert exc.code in (0, None)
    assert not stale.exists() and kept.exists()
    assert f"removed {stale}" in " ".join(capsys.readouterr().out.split())
    assert (out / "best.pt").is_file()


# ----------------------------------------------------------------------------- options honoured


def test_epochs_replace_a_presets_step_budget(lowrank_dir, tmp_path):
    """``--preset item`` trains 250 optimiser steps; ``--epochs 3`` used to be ignored."""
    run = tmp_path / "run"
    result = CliRunner().invoke(_app(), ["train", str(lowrank_dir), "--out", str(run),
                                         "--preset", "item", "--epochs", "3", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert len(read_metrics_csv(run / "metrics.csv")) == 3
    config = load_checkpoint(run / "last.pt").config
    assert (config.epochs, config.steps, config.orientation) == (3, 0, "item")
    assert ", 3 epochs, " in _flat(result.output)  # the one-line description says so


def test_steps_say_what_they_come_to_and_exclude_epochs(lowrank_dir, tmp_path):
    import re

    runner, app = CliRunner(), _app()
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(lowrank_dir), "--out", str(run), "--preset",
                                 "seed", "--layers", "8,4", "--batch-size", "64",
                                 "--steps", "5", "--threads", "1"])
    assert result.exit_code == 0, result.output
    out = _flat(result.output)
    assert "batch 64, 5 optimiser steps, seed 0" in out
    planned = re.search(r"5 optimiser steps: (\d+) epochs? of (\d+) batch", out)
    assert planned, out
    epochs, batches = int(planned.group(1)), int(planned.group(2))
    assert epochs == -(-5 // batches) and len(read_metrics_csv(run / "metrics.csv")) == epochs

    both = runner.invoke(app, ["train", str(lowrank_dir), "--out", str(tmp_path / "b"),
                               "--preset", "seed", "--epochs", "3", "--steps", "5"])
    assert both.exit_code == 2
    assert "--epochs 3 and --steps 5 both say how long to train" in _flat(both.output)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(("argv", "expected"), [
    (["--preset", "bayesian-mf", "--lr", "0.1", "--batch-size", "8"],
     "--batch-size, --lr set(s) a model's training, but bayesian-mf does not use them"),
    (["--preset", "best", "--epochs", "3", "--seed", "4"],
     "--epochs, --seed set(s) a model's training, but an ensemble trains each member"),
    (["--preset", "seed", "--holdout-fraction", "0.3"],
     "--holdout-fraction applies to --split user only (the split is auto)"),
    (["--preset", "seed", "--split", "sideways"],
     "'sideways' is not one of auto, random, fixed, probe, user, time"),
])
def test_options_the_model_would_ignore_are_refused(lowrank_dir, tmp_path, argv, expected):
    result = CliRunner().invoke(_app(), ["train", str(lowrank_dir), "--out",
                                         str(tmp_path / "run"), *argv])
    assert result.exit_code == 2
    assert expected in _flat(result.output)
    assert not (tmp_path / "run").exists()


def test_split_user_reaches_the_checkpoint(lowrank_dir, tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(_app(), ["train", str(lowrank_dir), "--out", str(run),
                                         "--split", "user", "--holdout-fraction", "0.3",
                                         *SMALL_RUN])
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(run / "best.pt")
    assert ckpt.split["protocol"] == "user" and ckpt.split["holdout_fraction"] == 0.3
    assert ckpt.config.split_protocol == "user"


def test_help_names_every_preset_on_a_line_and_the_split(monkeypatch):
    from aerec.cli.train import PRESET_DESCRIPTIONS
    from aerec.config import PRESETS

    assert set(PRESET_DESCRIPTIONS) == set(PRESETS)
    import typer.rich_utils

    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", 200)  # no wrapping
    text = CliRunner().invoke(_app(), ["train", "--help"]).output
    lines = [line.replace("│", " ").strip() for line in text.splitlines()]
    for name, description in PRESET_DESCRIPTIONS.items():
        assert any(line.endswith(f"{name}: {description}") for line in lines), name
    assert "--split" in text and "--holdout-fraction" in text and "--steps" in text


# ----------------------------------------------------------------------------- output


def test_a_log_gets_a_header_aligned_rows_and_the_best_marked(lowrank_dir, tmp_path):
    """CliRunner's output is not a terminal: plain lines, no live table or progress bar."""
    run = tmp_path / "run"
    result = CliRunner().invoke(_app(), ["train", str(lowrank_dir), "--out", str(run),
                                         "--preset", "seed", "--layers", "8,4", "--lr", "0.01",
                                         "--epochs", "3", "--threads", "1"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    headers = [i for i, line in enumerate(lines) if line.split()[:2] == ["epoch", "train_loss"]]
    assert len(headers) == 1
    rows = lines[headers[0] + 1: headers[0] + 4]
    assert [row.split()[0] for row in rows] == ["1", "2", "3"]
    header = lines[headers[0]]
    for row in rows:  # every number ends under the end of its column's name
        for name in ("train_loss", "val_RMSE", "seconds"):
            end = header.index(name) + len(name)
            assert row[end - 1] != " " and (len(row) == end or row[end] == " "), (header, row)
    best = load_checkpoint(run / "best.pt").epoch
    assert rows[best - 1].endswith("★")
    assert "┃" not in result.output and "epoch 3/3" not in result.output  # no live display


def _terminal(monkeypatch):
    """Point the train command's console at a forced terminal; returns its buffer."""
    import io

    from rich.console import Console

    import aerec.cli.train as cli_train

    buffer = io.StringIO()
    monkeypatch.setattr(cli_train, "console", Console(file=buffer, force_terminal=True,
                                                      width=110, color_system=None))
    return buffer


def test_a_terminal_table_marks_the_best_epoch(lowrank_dir, tmp_path, monkeypatch):
    buffer = _terminal(monkeypatch)
    run = tmp_path / "run"
    result = CliRunner().invoke(_app(), ["train", str(lowrank_dir), "--out", str(run),
                                         "--preset", "seed", "--layers", "8,4", "--lr", "0.01",
                                         "--epochs", "3", "--threads", "1"])
    assert result.exit_code == 0, result.output
    shown = buffer.getvalue()
    best = load_checkpoint(run / "best.pt").epoch
    final = shown[shown.rindex("epoch ┃"):]  # the last drawing of the table
    marked = [line for line in final.splitlines() if line.rstrip().endswith("★")]
    assert len(marked) == 1 and marked[0].split()[0] == str(best)
    assert "★ best epoch so far" in final and f"best: epoch {best} of 3" in shown


def test_a_run_that_fails_before_its_first_epoch_draws_no_progress(lowrank_dir, tmp_path,
                                                                   monkeypatch, capsys):
    """It used to leave an empty table and an "epoch 0/0" bar above the error."""
    buffer = _terminal(monkeypatch)
    err = _one_line_error(capsys, ["train", str(lowrank_dir), "--out", str(tmp_path / "run"),
                                   *SMALL_RUN, "--split", "time"])
    assert "protocol 'time' needs rating dates" in err
    shown = buffer.getvalue()
    assert "epoch 0/0" not in shown and "┃" not in shown and "batches" not in shown
