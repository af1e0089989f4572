"""The ``lowtide`` typer app and what its commands share: the console, printing untrusted text,
``--json`` files, the embedded server, the URL and namespace options.

Each command lives in its own module (``selftest``, ``doctor``, ``top``, ``switch``, ``server``,
``version``) and registers itself on :data:`app` when :mod:`lowtide.cli.main` imports it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

try:
    import typer
    from rich.console import Console
except ImportError:  # pragma: no cover - only without the cli extra
    sys.stderr.write("the lowtide CLI needs its extra: pip install 'lowtide[cli]'\n")
    raise SystemExit(2) from None

from lowtide import ConfigError, Lowtide, Settings, __version__
from lowtide.cli.output import cell

__all__ = [
    "URL_VARIABLES",
    "NamespaceOption",
    "UrlOption",
    "app",
    "configure_logging",
    "console",
    "embedded_server",
    "say",
    "settings_with_url",
    "unreachable",
    "write_json",
]

app = typer.Typer(
    help="lowtide: fewer billed Redis commands, and a ledger of every one sent.",
    no_args_is_help=True,
    add_completion=False,
)
# our own messages use markup; every untrusted value goes through output.cell() / say() as Text
console = Console(emoji=False)

#: where a command's ``--url`` comes from when it is not given (the first one set wins)
URL_VARIABLES = ["LOWTIDE_REDIS_URL", "REDIS_URL"]

UrlOption = Annotated[
    str | None,
    typer.Option(help="Redis URL (redis://, rediss://, unix://)", envvar=URL_VARIABLES),
]
NamespaceOption = Annotated[
    str, typer.Option(help="the fleet's lowtide namespace", envvar="LOWTIDE_NAMESPACE")
]


def configure_logging(*, verbose: bool = False) -> None:
    """What the ``lowtide`` script shows of the library's log: errors only (the commands say
    what matters themselves: an unreachable server, skipped snapshots), everything from INFO up
    with ``--verbose``."""
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("lowtide").setLevel(logging.INFO if verbose else logging.ERROR)


def _print_version(value: bool) -> None:
    if value:
        console.print(__version__)
        raise typer.Exit()


@app.callback()
def options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print lowtide's version and exit.",
        ),
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Show lowtide's own log lines (mode changes, reconnections, skipped values).",
        ),
    ] = False,
) -> None:
    """lowtide: fewer billed Redis commands, and a ledger of every one sent."""
    if verbose:
        configure_logging(verbose=True)


def unreachable(hub: Lowtide) -> ConnectionError:
    """The error a command reports when its hub did not reach Redis (with the reason)."""
    reason = hub.status().link.last_error
    where = hub.settings.redacted_url
    return ConnectionError(f"cannot reach {where}: {reason}" if reason else f"cannot reach {where}")


def say(message: object, style: str = "") -> None:
    """Print a message that may hold untrusted text (an error, a path) verbatim."""
    console.print(cell(message, style))


def write_json(path: Path, data: Any) -> None:
    """Write a ``--json`` file: called before anything is printed that could fail."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True))


@contextlib.contextmanager
def embedded_server(
    url: str | None, announce: Callable[[str], None] | None = None
) -> Iterator[str]:
    """``url`` as given, or an embedded Valkey server started for the command (announced with
    ``announce``, by default a dim line)."""
    if url:
        yield url
        return
    try:
        from lowtide.testing import ValkeyServer
    except ImportError as exc:  # pragma: no cover
        raise typer.BadParameter(
            "no --url and no embedded server (pip install lowtide[embedded])"
        ) from exc
    with ValkeyServer() as server:
        text = f"started embedded Valkey at {server.url}"
        if announce is None:
            say(text, "dim")
        else:
            announce(text)
        yield server.url


def settings_with_url(url: str | None, **changes: Any) -> Settings:
    """Settings from the environment with ``--url`` and ``changes`` winning; exits 2 when they
    are invalid or there is no URL at all."""
    try:
        if url:
            changes["url"] = url
        settings = Settings.from_env(**changes)
    except ConfigError as exc:
        say(exc, "red")
        raise typer.Exit(2) from None
    if settings.url is None:
        say(f"no --url and no {' / '.join(URL_VARIABLES)} (`lowtide server` starts one)", "red")
        raise typer.Exit(2)
    return settings
