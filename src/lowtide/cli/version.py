"""``lowtide --version``: the global option (``lowtide version`` is the same as a command)."""

from typing import Annotated

import typer
from rich.console import Console

from lowtide import __version__

__all__ = ["add_version_option"]


def add_version_option(app: typer.Typer, console: Console) -> None:
    """Give ``app`` a ``--version`` option that prints the version and exits."""

    def print_version(value: bool) -> None:
        if value:
            console.print(__version__)
            raise typer.Exit()

    @app.callback()
    def options(
        show_version: Annotated[
            bool,
            typer.Option(
                "--version",
                callback=print_version,
                is_eager=True,
                help="Print lowtide's version and exit.",
            ),
        ] = False,
    ) -> None:
        """lowtide: fewer billed Redis commands, and a ledger of every one sent."""
