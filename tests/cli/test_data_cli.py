"""``aerec data synth | prepare | info`` from the command line, including error output."""

from __future__ import annotations

import json
import subprocess
import sys

from typer.testing import CliRunner

from aerec.cli import app

runner = CliRunner()


def test_synth_prepare_info_round_trip(tmp_path):
    raw, ds = tmp_path / "raw", tmp_path / "ds"
    r = runner.invoke(app, ["data", "synth", "--out", str(raw), "--preset", "tiny", "--seed", "3"])
    assert r.exit_code == 0, r.output
    assert (raw / "combined_data_1.txt").is_file() and (raw / "movie_titles.csv").is_file()
    r = runner.invoke(app, ["data", "prepare", str(raw / "combined_data_1.txt"), "--out", str(ds)])
    assert r.exit_code == 0, r.output
    assert "300 users, 120 movies, 8,000 ratings" in " ".join(r.output.split())
    r = runner.invoke(app, ["data", "info", str(ds), "--json"])
    stats = json.loads(r.output)
    assert (stats["users"], stats["movies"], stats["ratings"]) == (300, 120, 8000)
    assert stats["sparsity"] == 8000 / (300 * 120)
    r = runner.invoke(app, ["data", "info", str(ds)])
    assert "rating histogram" in r.output and "sparsity" in r.output


def test_bad_input_is_one_clear_line_and_exit_2(tmp_path):
    bad = tmp_path / "combined_data_1.txt"
    bad.write_text("1:\n11,3,2005-09-06\nabc,4,2005-01-01\n")
    proc = subprocess.run(
        [sys.executable, "-m", "aerec", "data", "prepare", str(bad), "--out", str(tmp_path / "o")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert f"{bad}:3" in proc.stderr.replace("\n", "")
    assert not (tmp_path / "o").exists()
