"""Errors raised for bad input data: each names the file, the line (when known) and the reason."""

from __future__ import annotations

from pathlib import Path


class DataFormatError(ValueError):
    """A rating or title file that cannot be read as claimed.

    The message reads ``path:line: reason`` (or ``path: reason`` when no line applies), so a
    user can open the file at the offending line.
    """

    def __init__(self, path: str | Path, reason: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {reason}")
