"""The ``aerec`` entry point: ``--version``, and ``--shape`` (data shape) with its deprecated
name ``--preset`` in ``data synth`` and ``demo`` — ``--preset`` names a model in ``train``."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

import aerec
from aerec.cli import app

runner = CliRunner()


def test_version_prints_the_package_version_and_exits_0():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"aerec {aerec.__version__}\n"
    proc = subprocess.run([sys.executable, "-m", "aerec", "--version"], capture_output=True,
                          text=True)
    assert (proc.returncode, proc.stdout) == (0, f"aerec {aerec.__version__}\n")


def test_synth_takes_shape_and_still_the_old_preset_with_a_notice(tmp_path):
    result = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "a"), "--shape",
                                 "tiny"])
    assert result.exit_code == 0, result.output
    assert "300 users, 120 movies, 8,000 ratings" in " ".join(result.output.split())
    assert "note:" not in result.output

    old = runner.invoke(app, ["data", "synth", "--out", str(tmp_path / "b"), "--preset",
                              "tiny"])
    assert old.exit_code == 0, old.output
    assert "300 users, 120 movies" in " ".join(old.stdout.split())  # the same shape
    notice = " ".join(old.stderr.split())
    assert notice.startswith("note: --preset is now --shape") and len(
        old.stderr.strip().splitlines()) == 1
    assert (tmp_path / "b" / "combined_data_1.txt").read_bytes() == (
        tmp_path / "a" / "combined_data_1.txt").read_bytes()

    help_text = runner.invoke(app, ["data", "synth", "--help"]).output
    assert "--shape" in help_text and "--preset" not in help_text  # hidden


def test_synth_refuses_both_names_and_an_unknown_shape(tmp_path, capsys):
    from aerec.cli import main

    for argv, expected in (
        (["--shape", "demo", "--preset", "tiny"], "--preset is the old name of --shape"),
        (["--shape", "huge"], "unknown shape 'huge'; choose one of"),
    ):
        with pytest.raises(SystemExit) as info:
            main(["data", "synth", "--out", str(tmp_path / "x"), *argv])
        assert info.value.code == 2
        assert expected in " ".join(capsys.readouterr().err.split())
    assert not (tmp_path / "x").exists()


class _Stop(Exception):
    pass


def test_demo_passes_shape_on_and_accepts_the_old_preset(tmp_path, monkeypatch):
    import aerec.cli.demo as demo

    steps = []

    def first_step_only(title, argv):  # record the generate step, run nothing
        steps.append(argv)
        raise _Stop

    monkeypatch.setattr(demo, "_step", first_step_only)
    for option in ("--shape", "--preset"):
        result = runner.invoke(app, ["demo", "--out", str(tmp_path), option, "tiny"])
        assert isinstance(result.exception, _Stop), result.output
        synth = steps.pop()
        assert synth[:2] == ["data", "synth"]
        assert synth[synth.index("--shape") + 1] == "tiny" and "--preset" not in synth
    assert "note: --preset is now --shape" in " ".join(result.stderr.split())
