"""Shared CLI plumbing: the console, error reporting and number formatting."""

from __future__ import annotations

import errno
import sys

import typer
from rich.console import Console

from aerec.data.errors import DataFormatError

console = Console()
err_console = Console(stderr=True)

#: Exceptions that mean "the user's input is wrong": shown as one message, exit status 2.
USER_ERRORS = (DataFormatError, FileNotFoundError, FileExistsError, ValueError, KeyError)


#: ``OSError`` numbers that mean "this path cannot be used" (read-only, no permission, full
#: disk, ...): shown as one line naming the path, exit status 2.
FILE_ERRNOS = frozenset(
    getattr(errno, name) for name in ("EACCES", "EPERM", "EROFS", "ENOSPC", "EDQUOT", "EISDIR",
                                      "ENOTDIR", "ENAMETOOLONG", "ELOOP", "EFBIG")
    if hasattr(errno, name)
)


class UserError(Exception):
    """An error whose message is meant for the user as is."""


def fail(message: str) -> None:
    """Print ``message`` as an error and exit with status 2."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, markup=True,
                      soft_wrap=True)  # one line, however narrow the terminal
    raise SystemExit(2)


def run_guarded(app: typer.Typer, argv: list[str]) -> None:
    """Run the typer ``app``; user errors become one red line instead of a traceback."""
    try:
        app(args=argv, prog_name="aerec", standalone_mode=True)
    except SystemExit:
        raise
    except (UserError, *USER_ERRORS) as exc:
        msg = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
        fail(msg.replace("[", r"\["))
    except OSError as exc:
        if exc.errno not in FILE_ERRNOS:
            raise
        where = f"{exc.filename}: " if exc.filename else ""
        fail(f"{where}{exc.strerror or exc}".replace("[", r"\["))
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        sys.exit(130)


def fmt_int(n: int) -> str:
    return f"{n:,}"
