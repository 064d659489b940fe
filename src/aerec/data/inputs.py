"""Reading input files the same way in every reader: regular files only, gzip decompressed
transparently, and every failure a :class:`~aerec.data.errors.DataFormatError` naming the file.

A file whose first bytes are the gzip magic (``1f 8b``) is decompressed whatever its name, so
``ratings.csv.gz`` reads like ``ratings.csv``. A missing file stays ``FileNotFoundError``; any
other ``OSError`` (a folder where a file is expected, no permission, a device) and a corrupt
gzip stream become one ``path: reason`` message.
"""

from __future__ import annotations

import gzip
import os
import stat
import zlib
from pathlib import Path

from aerec.data.errors import DataFormatError

__all__ = [
    "GZIP_MAGIC",
    "check_regular_file",
    "is_gzip",
    "read_bytes",
    "read_head",
    "refuse_binary",
    "strip_gz",
]

GZIP_MAGIC = b"\x1f\x8b"
_GZIP_ERRORS = (OSError, EOFError, zlib.error)
_CONTROL = [c for c in range(32) if c not in (9, 10, 13)] + [127]


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def check_regular_file(path: str | Path) -> Path:
    """``path`` when it is a regular file (symlinks followed); else a DataFormatError saying
    what it is. A missing path raises ``FileNotFoundError``."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file or folder") from None
    except OSError as exc:
        raise DataFormatError(path, f"cannot read: {_reason(exc)}") from None
    if stat.S_ISDIR(mode):
        raise DataFormatError(path, "is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise DataFormatError(path, "is not a regular file (a device, pipe or socket)")
    return path


def _open(path: Path):
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such file or folder") from None
    except OSError as exc:
        raise DataFormatError(path, f"cannot read: {_reason(exc)}") from None


def is_gzip(path: str | Path) -> bool:
    """True when the file starts with the gzip magic bytes."""
    path = check_regular_file(path)
    with _open(path) as f:
        return f.read(2) == GZIP_MAGIC


def read_head(path: str | Path, n_bytes: int) -> bytes:
    """The first ``n_bytes`` of the file's content (decompressed when it is gzip)."""
    path = check_regular_file(path)
    with _open(path) as f:
        try:
            head = f.read(n_bytes)
            if not head.startswith(GZIP_MAGIC):
                return head
            f.seek(0)
            with gzip.GzipFile(fileobj=f) as z:
                return z.read(n_bytes)
        except _GZIP_ERRORS as exc:
            raise DataFormatError(path, f"cannot read: {_describe(exc)}") from None


def read_bytes(path: str | Path) -> bytes:
    """The whole content of the file (decompressed when it is gzip)."""
    path = check_regular_file(path)
    with _open(path) as f:
        try:
            raw = f.read()
        except OSError as exc:
            raise DataFormatError(path, f"cannot read: {_reason(exc)}") from None
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except _GZIP_ERRORS as exc:
        raise DataFormatError(path, f"cannot decompress gzip data: {_describe(exc)}") from None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def refuse_binary(path: str | Path, head: bytes) -> None:
    """A DataFormatError when the (decompressed) head of a text file is binary data (an
    archive, an image, a NumPy file …), not ratings or titles: it holds a NUL byte, or more than
    5 % of its bytes are control characters other than tab, CR, LF."""
    nul = head.find(b"\0")
    if nul >= 0:
        line = head.count(b"\n", 0, nul) + 1
        raise DataFormatError(
            path, "binary data (NUL bytes), not a text rating or titles file", line=line
        )
    if len(head) >= 64:
        control = sum(head.count(bytes([c])) for c in _CONTROL)
        if control > 0.05 * len(head):
            raise DataFormatError(
                path, "binary data (control bytes), not a text rating or titles file"
            )


def strip_gz(name: str) -> str:
    """A file name without a trailing ``.gz`` (``ratings.csv.gz`` → ``ratings.csv``)."""
    return name[:-3] if name.lower().endswith(".gz") else name
