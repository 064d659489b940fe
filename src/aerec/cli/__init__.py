"""The ``aerec`` command line: thin calls into the Python API, with rich output.

Sub-command modules each define ``register(app)``; errors from bad input become one red line
and exit status 2 instead of a traceback.
"""

from __future__ import annotations

import sys

import typer

from aerec import __version__
from aerec.cli import data as data_cli
from aerec.cli.common import run_guarded

app = typer.Typer(
    name="aerec",
    help="Autoencoder movie recommender for Netflix Prize-style rating data.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"aerec {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_print_version, is_eager=True,
        help="Print the version (aerec X.Y.Z) and exit.",
    ),
) -> None:
    """Autoencoder movie recommender for Netflix Prize-style rating data."""


data_cli.register(app)

for _name in ("train", "evaluate", "crossval", "tune", "recommend", "serve", "demo"):
    try:
        _module = __import__(f"aerec.cli.{_name}", fromlist=["register"])
    except ModuleNotFoundError as exc:  # a sub-command whose module is not part of this build
        if exc.name != f"aerec.cli.{_name}":
            raise
        continue
    _module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    run_guarded(app, argv if argv is not None else sys.argv[1:])
