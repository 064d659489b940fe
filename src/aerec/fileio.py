"""Atomic file writes: a temporary file in the same folder, fsync, then ``os.replace``, so a
crash never leaves a half-written file behind; and folder outputs built beside their final name,
renamed into place, with what killed writers left behind cleaned by the next one."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_write(path: str | Path, mode: str = "w", tag: str = "") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing (``mode`` "w" text UTF-8 or "wb");
    on success it replaces ``path``, on any error it is removed. ``tag`` goes into the
    temporary's name (``.NAME.TAG.RANDOM.tmp``), e.g. the writer's PID so that what a killed
    writer left can be recognised."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{path.name}.{tag}." if tag else f".{path.name}."
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; these are ordinary files
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ----------------------------------------------------------------------------- folder outputs
#
# A folder output (a prepared dataset, synthetic files) is built in a hidden sibling
# ``.NAME.tmp-PID-XXXXXXXX`` and renamed into place; a previous ``NAME`` is first moved aside to
# ``.NAME.old-PID-XXXXXXXX`` and removed once the new one is in place. The writer's PID is in both
# names, so a later run can tell leftovers of a killed writer (PID no longer running) from the
# work of a live one, and clean them: see :func:`clean_stale_siblings`.

_SIBLING_REST = re.compile(r"(?P<tag>tmp|old)-(?P<pid>[0-9]{1,10})(?:-[0-9a-f]{1,32})?")


def sibling_path(out: str | Path, tag: str) -> Path:
    """A fresh hidden name beside ``out``: ``.NAME.TAG-PID-XXXXXXXX`` (``tag`` "tmp" or "old")."""
    out = Path(out)
    return out.parent / f".{out.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}"


def make_sibling_dir(out: str | Path, tag: str = "tmp") -> Path:
    """Create and return a new empty ``.NAME.TAG-PID-XXXXXXXX`` folder beside ``out`` (made with
    the process umask, unlike ``tempfile.mkdtemp``'s 0700, because it becomes ``out``)."""
    for _ in range(100):
        path = sibling_path(out, tag)
        try:
            path.mkdir()
            return path
        except FileExistsError:  # pragma: no cover - 32 random bits collided
            continue
    raise FileExistsError(f"cannot create a temporary folder beside {out}")  # pragma: no cover


def pid_alive(pid: int) -> bool:
    """True when a process with this PID exists (on this machine), including one we may not
    signal."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    except OSError:  # cannot tell: count it as alive, so nothing of a live writer is removed
        return True
    return True


def remove_path(path: str | Path) -> None:
    """Remove a file, link or folder tree; what cannot be removed stays (no error)."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink(missing_ok=True)
        except OSError:
            pass


def clean_stale_siblings(out: str | Path) -> list[Path]:
    """Clean what killed writers of ``out`` left beside it: ``.NAME.tmp-PID-…`` folders and
    ``.NAME.old-PID-…`` copies whose PID is no longer running.

    A stale ``old`` copy is the previous ``out`` of a writer killed between moving it aside and
    renaming its new folder into place: it is renamed back when ``out`` is missing (so nothing
    is lost), else removed. Entries of live writers are left alone. Returns the paths cleaned.
    """
    out = Path(out)
    parent = out.parent
    prefix = f".{out.name}."
    cleaned: list[Path] = []
    try:
        entries = sorted(e.name for e in os.scandir(parent) if e.name.startswith(prefix))
    except OSError:
        return cleaned
    for name in entries:
        m = _SIBLING_REST.fullmatch(name[len(prefix):])
        if m is None or pid_alive(int(m["pid"])):
            continue
        path = parent / name
        if m["tag"] == "old" and not os.path.lexists(out):
            try:
                os.replace(path, out)
                cleaned.append(path)
                continue
            except OSError:
                pass
        remove_path(path)
        if not os.path.lexists(path):
            cleaned.append(path)
    return cleaned


def move_into_place(tmp: str | Path, out: str | Path) -> None:
    """Rename the finished ``tmp`` to ``out``, replacing what is there (a folder, a file, a link).

    The previous ``out`` is moved aside to ``.NAME.old-PID-…`` and removed after the rename, so
    no copy stays behind; only a kill between the two renames leaves it, for
    :func:`clean_stale_siblings` to put back."""
    tmp, out = Path(tmp), Path(out)
    if not os.path.lexists(out):
        os.replace(tmp, out)
        return
    old = sibling_path(out, "old")
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    except BaseException:
        os.replace(old, out)  # put the previous one back
        raise
    remove_path(old)

