"""Damaged, truncated, inconsistent or unsafe checkpoint files are refused in one line.

Guards against: a checkpoint with flipped bytes in its weights evaluating and serving silently
(a different model, no warning); a truncated file or a corrupted stored-rating index surfacing
as a PyTorch traceback deep inside scoring; a file holding pickled code answered with
PyTorch's advice to load it with ``weights_only=False``; checkpoints written before the digest
no longer loading.
"""

from __future__ import annotations

import math
import os
import pickle
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
import torch

from aerec.checkpoint import (
    DIGEST_KEY,
    CheckpointError,
    load_checkpoint,
    payload_digest,
    read_payload,
    remove_stale_temporaries,
    save_checkpoint,
)
from aerec.cli import main
from aerec.config import TrainConfig
from aerec.train import train


@pytest.fixture(scope="module")
def run(lowrank_dir, tmp_path_factory):
    config = TrainConfig(layers=(16, 8, 4), lr=3e-3, batch_size=32, epochs=2, threads=1)
    return train(lowrank_dir, tmp_path_factory.mktemp("integrity") / "run", config)


def _member_offset(path, name: str) -> int:
    """Where the bytes of zip member ``name`` (stored uncompressed) start in ``path``."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    with open(path, "rb") as f:
        f.seek(info.header_offset + 26)
        name_len, extra_len = np.frombuffer(f.read(4), dtype="<u2")
    return info.header_offset + 30 + int(name_len) + int(extra_len)


def _largest_tensor(path) -> tuple[str, int]:
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename),
                   key=lambda i: i.file_size)
    return info.filename, info.file_size


def _flip(path, out, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    out.write_bytes(bytes(data))


def _cli_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err  # one line, however long
    return err.strip()


def test_flipped_weight_bytes_are_a_checksum_mismatch(run, tmp_path):
    best = run.best_checkpoint
    name, size = _largest_tensor(best)
    damaged = tmp_path / "best.pt"
    _flip(best, damaged, _member_offset(best, name) + size // 2)
    # PyTorch itself reads the damaged weights without a word: the digest is what notices
    torch.load(damaged, map_location="cpu", weights_only=True)
    with pytest.raises(CheckpointError, match=r"best.pt is damaged \(checksum mismatch\)$"):
        load_checkpoint(damaged)


def test_flipped_bytes_in_the_metadata_are_a_checksum_mismatch(run, tmp_path):
    best = run.best_checkpoint
    with zipfile.ZipFile(best) as archive:
        pkl = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        pkl_size = archive.getinfo(pkl).file_size
    for i, offset in enumerate(range(0, pkl_size, max(1, pkl_size // 16))):
        damaged = tmp_path / f"meta{i}.pt"
        _flip(best, damaged, _member_offset(best, pkl) + offset)
        with pytest.raises(CheckpointError, match="is damaged"):
            load_checkpoint(damaged)


def test_no_flipped_byte_anywhere_changes_the_model_silently(run, tmp_path):
    """A byte flipped anywhere in the file is refused in one line, or (zip padding and
    bookkeeping) changes nothing that is loaded; never another exception, never other
    contents."""
    data = run.best_checkpoint.read_bytes()
    reference = read_payload(run.best_checkpoint)[DIGEST_KEY]
    refused = 0
    for offset in np.linspace(0, len(data) - 1, 64).astype(int):
        damaged = tmp_path / "best.pt"
        _flip(run.best_checkpoint, damaged, int(offset))
        try:
            loaded = load_checkpoint(damaged)
        except CheckpointError as exc:
            assert "\n" not in str(exc)
            refused += 1
            continue
        assert payload_digest(loaded.payload) == reference, offset
    assert refused >= 48  # almost every byte of a checkpoint is payload


@pytest.mark.parametrize("keep", [0.0, 0.01, 0.5, 0.99])
def test_truncated_files_are_damaged(run, tmp_path, keep):
    data = run.best_checkpoint.read_bytes()
    cut = tmp_path / "best.pt"
    cut.write_bytes(data[: int(len(data) * keep)])
    expected = "empty file" if keep == 0 else "truncated"
    with pytest.raises(CheckpointError, match=rf"is damaged \({expected}\)"):
        load_checkpoint(cut)


@pytest.mark.parametrize("change, message", [
    (lambda r: r["indices"].__setitem__(5, 999), "movie index 999 at position 5 is outside"),
    (lambda r: r["indices"].__setitem__(0, -2), "movie index -2 at position 0 is outside"),
    (lambda r: r["indptr"].__setitem__(3, 10**6), "row offsets"),
    (lambda r: r["codes"].__setitem__(1, 200), "rating code 200 is outside"),
    (lambda r: r.__setitem__("indices", r["indices"][:-1]), "movie indices but"),
])
def test_an_inconsistent_stored_rating_is_a_clear_error(run, tmp_path, change, message):
    payload = read_payload(run.best_checkpoint)
    change(payload["ratings"])
    bad = save_checkpoint(payload, tmp_path / "best.pt")  # a valid digest over bad contents
    with pytest.raises(CheckpointError, match="is damaged .*" + message):
        load_checkpoint(bad)


def test_contents_that_disagree_with_the_model_are_refused(run, tmp_path):
    payload = read_payload(run.best_checkpoint)
    payload["titles"] = payload["titles"][:5]
    with pytest.raises(CheckpointError, match="5 titles for a model of 60 movies"):
        load_checkpoint(save_checkpoint(payload, tmp_path / "titles.pt"))
    payload = read_payload(run.best_checkpoint)
    payload["architecture"]["layers"] = [17, 8, 4]
    with pytest.raises(CheckpointError, match="weights do not fit its architecture"):
        load_checkpoint(save_checkpoint(payload, tmp_path / "arch.pt"))
    payload = read_payload(run.best_checkpoint)
    del payload["scale"]
    with pytest.raises(CheckpointError, match="missing entry 'scale'"):
        load_checkpoint(save_checkpoint(payload, tmp_path / "scale.pt"))


def test_the_digest_covers_every_entry_and_is_stable(run):
    payload = read_payload(run.last_checkpoint)
    assert payload[DIGEST_KEY] == payload_digest(payload)
    assert payload_digest(payload) == payload_digest(dict(payload))  # no hidden state
    for key, change in [
        ("config", lambda p: p["config"].__setitem__("lr", p["config"]["lr"] * 2)),
        ("history", lambda p: p["history"][0].__setitem__("val_rmse", 0.5)),
        ("trainer", lambda p: p["trainer"].__setitem__("epoch", 99)),
        ("titles", lambda p: p["titles"].__setitem__(0, "Movie 0 ")),
    ]:
        copy = read_payload(run.last_checkpoint)
        change(copy)
        assert payload_digest(copy) != payload[DIGEST_KEY], key


def test_checkpoints_written_before_the_digest_still_load(run, tmp_path):
    payload = read_payload(run.best_checkpoint)
    del payload[DIGEST_KEY]
    legacy = tmp_path / "legacy.pt"
    torch.save(payload, legacy)  # as aerec wrote it before
    ckpt = load_checkpoint(legacy)
    expected = load_checkpoint(run.best_checkpoint)
    for a, b in zip(ckpt.model.state_dict().values(), expected.model.state_dict().values()):
        assert torch.equal(a, b)
    # without a digest the zip's own CRCs still catch flipped weights
    name, size = _largest_tensor(legacy)
    _flip(legacy, tmp_path / "flipped.pt", _member_offset(legacy, name) + size // 2)
    with pytest.raises(CheckpointError, match=r"is damaged \(checksum mismatch\)"):
        load_checkpoint(tmp_path / "flipped.pt")


class _Code:
    def __reduce__(self):
        return (os.getcwd, ())


@pytest.mark.parametrize("writer", ["torch", "pickle", "plain pickle"])
def test_pickled_code_is_refused_without_advising_unsafe_loading(tmp_path, writer):
    path = tmp_path / "best.pt"
    if writer == "torch":
        torch.save({"format": "aerec-checkpoint", "hook": math.sqrt, "x": _Code()}, path)
    elif writer == "pickle":
        path.write_bytes(pickle.dumps({"x": _Code()}))
    else:
        path.write_bytes(pickle.dumps({"format": "aerec-checkpoint"}))
    with pytest.raises(CheckpointError, match="is not a safe aerec checkpoint") as refused:
        load_checkpoint(path)
    message = str(refused.value)
    assert "\n" not in message and "weights_only" not in message


def test_other_files_are_named_plainly(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="is not an aerec checkpoint"):
        load_checkpoint(text)
    with pytest.raises(CheckpointError, match="is not a checkpoint file"):
        load_checkpoint(tmp_path)


def test_the_cli_reports_damage_in_one_line(run, tmp_path, capsys):
    damaged_run = tmp_path / "run"
    damaged_run.mkdir()
    for f in run.run_dir.iterdir():
        (damaged_run / f.name).write_bytes(f.read_bytes())
    best = damaged_run / "best.pt"
    name, size = _largest_tensor(best)
    _flip(run.best_checkpoint, best, _member_offset(best, name) + size // 2)
    err = _cli_error(capsys, ["evaluate", str(damaged_run)])
    assert err == f"error: {best} is damaged (checksum mismatch)"
    err = _cli_error(capsys, ["recommend", str(damaged_run), "--rate", "Movie 1=5"])
    assert err == f"error: {best} is damaged (checksum mismatch)"
    best.write_bytes(run.best_checkpoint.read_bytes()[:1000])
    err = _cli_error(capsys, ["evaluate", str(damaged_run)])
    assert err == f"error: {best} is damaged (truncated)"
    torch.save({"format": "aerec-checkpoint", "hook": math.sqrt}, best)
    err = _cli_error(capsys, ["evaluate", str(damaged_run)])
    assert "is not a safe aerec checkpoint" in err and "weights_only" not in err
    payload = read_payload(run.best_checkpoint)
    payload["ratings"]["indices"][3] = 60
    save_checkpoint(payload, best)
    err = _cli_error(capsys, ["recommend", str(damaged_run), "--user", "1000"])
    assert "is damaged (stored ratings: movie index 60 at position 3" in err


def test_stale_temporaries_of_gone_writers_are_removed(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    alive = os.getppid()  # a live process that is not this one
    member = tmp_path / "members" / "item"
    (member / "x").mkdir(parents=True)
    names = {
        "dead writer": tmp_path / f".best.pt.{gone.pid}.abc_1234.tmp",
        "dead writer, member": member / f".last.pt.{gone.pid}.x1y2z3w4.tmp",
        "old, no pid": tmp_path / ".last.pt.q9w8e7r6.tmp",
        "live writer": tmp_path / f".best.pt.{alive}.abcd1234.tmp",
        "new, no pid": tmp_path / ".best.pt.n3w4b5c6.tmp",
        "not a checkpoint": tmp_path / ".notes.txt.1.abc.tmp",
        "too deep to be the run's": member / "x" / f".best.pt.{gone.pid}.d33p0000.tmp",
        "a checkpoint": tmp_path / "best.pt",
    }
    for path in names.values():
        path.write_bytes(b"partial")
    started = time.time()
    past = started - 3600
    os.utime(names["old, no pid"], (past, past))
    future = started + 3600  # written after this run started (by someone else)
    os.utime(names["new, no pid"], (future, future))
    removed = set(remove_stale_temporaries(tmp_path, started))
    assert removed == {names["dead writer"], names["dead writer, member"], names["old, no pid"]}
    for label in ("live writer", "new, no pid", "not a checkpoint", "a checkpoint",
                  "too deep to be the run's"):
        assert names[label].exists(), label


def test_checkpoint_temporaries_name_their_writer(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def replace(src, dst):
        seen.append(os.path.basename(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    save_checkpoint({"format": "aerec-checkpoint", "x": torch.zeros(2)}, tmp_path / "best.pt")
    assert len(seen) == 1 and seen[0].startswith(f".best.pt.{os.getpid()}.")
    assert seen[0].endswith(".tmp") and not list(tmp_path.glob(".*.tmp"))
