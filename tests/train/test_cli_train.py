"""``aerec train`` end to end through typer: options reach the config, resume works, divergence
exits non-zero with the message, and the summary shows the best losses and RMSEs."""

from __future__ import annotations

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
