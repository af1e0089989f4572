"""``lowtide --version`` and ``lowtide version`` print the package version."""

from __future__ import annotations

from typer.testing import CliRunner

from lowtide import __version__
from lowtide.cli.main import app


def test_version_option_and_command() -> None:
    runner = CliRunner()
    for args in (["--version"], ["version"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert result.output.strip() == __version__
