"""``aerec data synth | prepare | info`` from the command line, including error output."""

from __future__ import annotations

import errno
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from aerec.cli import app, main
from aerec.data.store import load_dataset

runner = CliRunner()


def test_synth_prepare_info_round_trip(tmp_path):
    raw, ds = tmp_path / "raw", tmp_path / "ds"
    r = runner.invoke(app, ["data", "synth", "--out", str(raw), "--shape", "tiny", "--seed", "3"])
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


# ----------------------------------------------------------------------------- hostile use


def _main_ok(argv: list[str]) -> None:
    """Run the command line in-process as ``aerec`` does; it must succeed."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code in (0, None)


def _main_error(capsys, argv: list[str]) -> str:
    """Run the command line in-process as ``aerec`` does; its one error message (exit 2)."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert err.count("error:") == 1, err
    return " ".join(err.split())


def test_force_onto_the_input_folder_is_refused_and_keeps_it(tmp_path, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "r.csv").write_text("1,10,4\n2,10,5\n")
    message = _main_error(capsys, ["data", "prepare", str(src), "--out", str(src), "--force"])
    assert f"--out {src} is the input {src}" in message
    message = _main_error(
        capsys, ["data", "prepare", str(src), "--out", str(src / "ds"), "--force"]
    )
    assert "lies inside the input" in message
    assert sorted(p.name for p in src.iterdir()) == ["r.csv"]


def test_large_rating_is_an_error_not_a_wrong_value(tmp_path, capsys):
    src = tmp_path / "r.csv"
    src.write_text("user,item,rating\n1,10,4\n2,10,5\n4,10,100000\n")
    message = _main_error(capsys, ["data", "prepare", str(src), "--out", str(tmp_path / "ds")])
    assert f"{src}:4: rating '100000' cannot be stored" in message
    src.write_text("user,item,rating\n1,10,4\n2,10,5\n4,10,10000000000\n")
    message = _main_error(capsys, ["data", "prepare", str(src), "--out", str(tmp_path / "ds")])
    assert f"{src}:4: rating '10000000000' is too large" in message
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("command", ["prepare", "synth"])
def test_read_only_out_is_one_line(tmp_path, capsys, monkeypatch, command):
    src = tmp_path / "r.csv"
    src.write_text("1,10,4\n2,10,5\n")
    read_only = tmp_path / "ro"
    read_only.mkdir()
    real_mkdir = os.mkdir

    def mkdir(path, *args, **kwargs):  # a read-only file system under ro/
        if str(path).startswith(str(read_only)):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    out = read_only / "out"
    argv = (
        ["data", "prepare", str(src), "--out", str(out)]
        if command == "prepare"
        else ["data", "synth", "--out", str(out), "--shape", "tiny"]
    )
    message = _main_error(capsys, argv)
    assert message == f"error: cannot write {out}: Read-only file system"


def test_hostile_inputs_are_one_line_each(tmp_path, capsys):
    out = str(tmp_path / "ds")
    cases = {}
    cases["zip.csv"] = (b"PK\x03\x04" + bytes(range(256)) * 4, "binary data")
    cases["bad.csv"] = (b"1,10,4\n\xff\xfe,1\n", "bad.csv:2: expected 3 comma-separated fields")
    cases["u.data"] = (b"1\t10\t4\t5\n\xff\t1\n", "u.data:2: expected 4 tab-separated fields")
    cases["cut.csv.gz"] = (gzip.compress(b"1,10,4\n" * 500)[:30], "cut.csv.gz: cannot read")
    cases["d.csv"] = (b"1,10,4,2005-02-30\n", "d.csv:1: timestamp '2005-02-30' is not a valid")
    for name, (payload, expected) in cases.items():
        (tmp_path / name).write_bytes(payload)
        message = _main_error(capsys, ["data", "prepare", str(tmp_path / name), "--out", out])
        assert expected in message, message
    training = tmp_path / "training_set"
    training.mkdir()
    (training / "mv_0000001.txt").write_text("1:\n5,3,2005-01-01\n")
    (training / "mv_0000003.txt").mkdir()
    message = _main_error(capsys, ["data", "prepare", str(training), "--out", out])
    assert "mv_0000003.txt: is a folder, not a file" in message
    assert not (tmp_path / "ds").exists()


def test_gzip_input_is_simply_read(tmp_path, capsys):
    src = tmp_path / "scores.csv.gz"
    src.write_bytes(gzip.compress(b"user,item,rating\n1,10,95\n1,11,40\n2,10,1\n"))
    _main_ok(["data", "prepare", str(src), "--out", str(tmp_path / "ds")])
    assert "2 users, 2 movies, 3 ratings" in " ".join(capsys.readouterr().out.split())


# ----------------------------------------------------------------------------- kill -9


_KILL_HOOK = '''
import os, signal

_point = os.environ.get("AEREC_TEST_KILL", "")


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


if _point.startswith("save:"):  # after the N-th array written into the temporary folder
    import numpy as np
    _left = [int(_point[5:])]
    _save = np.save

    def _counting_save(*args, **kwargs):
        _save(*args, **kwargs)
        _left[0] -= 1
        if _left[0] == 0:
            _die()

    np.save = _counting_save
elif _point == "aside":  # right after the previous output was moved aside (.NAME.old-PID-…)
    _replace = os.replace

    def _replace_then_die(src, dst, *args, **kwargs):
        _replace(src, dst, *args, **kwargs)
        if ".old-" in os.fspath(dst):
            _die()

    os.replace = _replace_then_die
elif _point == "remove-old":  # new output in place, the full old copy not yet removed
    import shutil
    _rmtree, _unlink = shutil.rmtree, os.unlink

    def _die_on_old(remove):
        def wrapped(path, *args, **kwargs):
            if ".old-" in os.fspath(path):
                _die()
            return remove(path, *args, **kwargs)
        return wrapped

    shutil.rmtree, os.unlink = _die_on_old(_rmtree), _die_on_old(_unlink)
'''


def _killed_prepare(hook_dir, src, out, point, force):
    """Run ``python -m aerec data prepare`` with the kill hook; it must die by SIGKILL."""
    env = dict(os.environ, AEREC_TEST_KILL=point)
    env["PYTHONPATH"] = os.pathsep.join([str(hook_dir), env.get("PYTHONPATH", "")])
    argv = [sys.executable, "-m", "aerec", "data", "prepare", str(src), "--out", str(out)]
    proc = subprocess.run(argv + (["--force"] if force else []), env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".ds."))


def _ratings_file(path, n_users: int, seed: int):
    rng = np.random.default_rng(seed)
    users = np.repeat(np.arange(1, n_users + 1), 20)
    movies = np.concatenate([rng.choice(500, 20, replace=False) for _ in range(n_users)])
    stars = rng.integers(1, 6, users.size)
    path.write_text("user,item,rating\n" + "".join(
        f"{u},{m},{s}\n" for u, m, s in zip(users, movies, stars)))
    return path


def test_kill_9_during_prepare_leaves_nothing_the_next_run_does_not_clean(tmp_path, capsys):
    """SIGKILL ``aerec data prepare`` at four points of writing its output; after each, the
    leftovers are what the next run cleans, and the next run writes the right dataset."""
    (tmp_path / "hook").mkdir()
    (tmp_path / "hook" / "sitecustomize.py").write_text(_KILL_HOOK)
    old_src = _ratings_file(tmp_path / "old.csv", 50, seed=1)
    new_src = _ratings_file(tmp_path / "new.csv", 80, seed=2)
    out = tmp_path / "ds"
    _main_ok(["data", "prepare", str(new_src), "--out", str(tmp_path / "reference")])
    want = load_dataset(tmp_path / "reference").matrix

    def next_run_is_clean_and_right():
        _main_ok(["data", "prepare", str(new_src), "--out", str(out), "--force"])
        assert _leftovers(tmp_path) == []
        got = load_dataset(out).matrix
        assert (got != want).nnz == 0 and got.shape == want.shape

    # 1. killed while writing a fresh output: a .ds.tmp-PID-… folder is left
    _killed_prepare(tmp_path / "hook", new_src, out, "save:3", force=False)
    assert not out.exists() and [n[:8] for n in _leftovers(tmp_path)] == [".ds.tmp-"]
    next_run_is_clean_and_right()

    # 2. --force killed between moving the previous dataset aside and renaming the new one in:
    # the next run puts the previous dataset back (nothing lost), then replaces it
    _main_ok(["data", "prepare", str(old_src), "--out", str(out), "--force"])
    _killed_prepare(tmp_path / "hook", new_src, out, "aside", force=True)
    assert not out.exists() and sorted(n[:8] for n in _leftovers(tmp_path)) == [
        ".ds.old-", ".ds.tmp-"]
    with pytest.raises(SystemExit):  # without --force: the previous dataset is back, intact
        main(["data", "prepare", str(new_src), "--out", str(out)])
    assert "already exists" in capsys.readouterr().err
    assert load_dataset(out).n_users == 50 and _leftovers(tmp_path) == []
    next_run_is_clean_and_right()

    # 3. --force killed after the new dataset is in place, before the old copy is removed
    _main_ok(["data", "prepare", str(old_src), "--out", str(out), "--force"])
    _killed_prepare(tmp_path / "hook", new_src, out, "remove-old", force=True)
    assert load_dataset(out).n_users == 80 and [n[:8] for n in _leftovers(tmp_path)] == [
        ".ds.old-"]
    next_run_is_clean_and_right()

    # 4. --force onto a plain file, killed before the moved-aside file is removed
    shutil.rmtree(out)
    out.write_text("a plain file")
    _killed_prepare(tmp_path / "hook", new_src, out, "remove-old", force=True)
    next_run_is_clean_and_right()
