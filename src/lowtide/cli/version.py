"""``lowtide version`` (``lowtide --version`` is a global option: :mod:`lowtide.cli.app`)."""

from lowtide import __version__
from lowtide.cli.app import app, console

__all__ = ["version"]


@app.command()
def version() -> None:
    """Print lowtide's version."""
    console.print(__version__)
