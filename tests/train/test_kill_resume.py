"""``kill -9`` in the middle of a checkpoint write: the run resumes and nothing is left behind.

Guards against: a half-written ``.best.pt.*.tmp`` / ``.last.pt.*.tmp`` staying in the run
directory forever after a hard kill, and a kill corrupting the checkpoints already written.

The child process is stopped at a known point — inside the third ``torch.save`` call (epoch
2's first checkpoint), after it has written part of the file — so the test is deterministic;
the only wait is for the child to get there (bounded, not a timing assertion).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from aerec.cli import main
from aerec.train import load_checkpoint
from aerec.train.metrics_log import read_metrics_csv

#: Runs ``aerec ARGS`` with ``torch.save`` hanging, half-written, at its third call.
CHILD = """
import sys, time, torch
marker = sys.argv[1]
real_save, calls = torch.save, [0]
def save(obj, f, *args, **kwargs):
    calls[0] += 1
    if calls[0] == 3:  # epoch 2: epoch 1's best.pt and last.pt are complete
        f.write(b"PK\\x03\\x04 half a checkpoint")
        f.flush()
        open(marker, "w").close()
        while True:
            time.sleep(1)
    return real_save(obj, f, *args, **kwargs)
torch.save = save
from aerec.cli import main
main(sys.argv[2:])
"""

#: Longest wait for the child to reach the write (imports included) before the test fails.
CHILD_LIMIT_S = 300


def test_kill_9_during_a_checkpoint_write_then_resume(lowrank_dir, tmp_path, capsys):
    out = tmp_path / "run"
    marker = tmp_path / "writing"
    args = ["train", str(lowrank_dir), "--out", str(out), "--preset", "seed", "--layers",
            "16,8,4", "--epochs", "4", "--lr", "0.003", "--batch-size", "64", "--threads", "1"]
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(marker), *args],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        limit = time.monotonic() + CHILD_LIMIT_S
        while not marker.exists() and child.poll() is None and time.monotonic() < limit:
            time.sleep(0.05)
        assert marker.exists(), child.communicate(timeout=10)[0].decode(errors="replace")
        os.kill(child.pid, signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()
    assert child.returncode == -signal.SIGKILL

    left = sorted(p.name for p in out.glob(".*.tmp"))
    assert len(left) == 1 and left[0].startswith((f".best.pt.{child.pid}.",
                                                  f".last.pt.{child.pid}."))
    # what was written before the kill is whole: the atomic rename never saw the half file
    assert load_checkpoint(out / "last.pt").epoch == 1
    assert load_checkpoint(out / "best.pt").epoch == 1

    try:
        main(["train", str(lowrank_dir), "--out", str(out), "--resume", "--threads", "1"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    said = "".join(capsys.readouterr().out.split())
    assert f"removed{out / left[0]}".replace(" ", "") in said
    assert not list(out.rglob("*.tmp"))  # nothing left behind
    last = load_checkpoint(out / "last.pt")
    assert last.epoch == 4 and len(read_metrics_csv(out / "metrics.csv")) == 4
    assert load_checkpoint(out / "best.pt").epoch >= 1
