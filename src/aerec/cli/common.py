"""Shared CLI plumbing: the console, error reporting and number formatting."""

from __future__ import annotations

import errno
import os
import sys

import typer
from rich.console import Console

from aerec.data.errors import DataFormatError

#: In a data-parallel job (torchrun) only rank 0 reports; the other ranks print errors only.
console = Console(quiet=int(os.environ.get("RANK", "0")) > 0)
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
    except RuntimeError as exc:
        from aerec.train.distributed import PeerLost

        if not isinstance(exc, PeerLost):
            raise
        message = str(exc).replace("[", r"\[")
        err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
        sys.exit(1)


def renamed_option(new: str, value: str | None, old: str, old_value: str | None,
                   why: str = "") -> str | None:
    """The value of option ``new``, honouring its deprecated name ``old`` (a hidden option
    kept so existing scripts still run): given alone, ``old`` is used with a one-line notice on
    stderr; given with ``new`` as well it is an error naming both."""
    if old_value is None:
        return value
    if value is not None:
        raise UserError(f"{old} is the old name of {new}; give {new} only "
                        f"(got {old} {old_value} and {new} {value})")
    err_console.print(f"[yellow]note:[/] {old} is now {new}{why}; {old} still works for now",
                      highlight=False, soft_wrap=True)
    return old_value


def fmt_int(n: int) -> str:
    return f"{n:,}"
