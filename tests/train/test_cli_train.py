"""``aerec train`` end to end through typer: options reach the config, resume works, divergence
exits non-zero with the message, and the summary shows the best losses and RMSEs."""

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
    assert "best training loss" in first.output and "best validation loss" in first.output
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
