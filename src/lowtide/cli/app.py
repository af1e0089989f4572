"""The ``lowtide`` typer app and what its commands share: the console, printing untrusted text,
``--json`` files, the embedded server, the URL and namespace options.

Each command lives in its own module (``selftest``, ``doctor``, ``top``, ``switch``, ``server``,
``version``) and registers itself on :data:`app` when :mod:`lowtide.cli.main` imports it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any, NoReturn

try:
    import typer
    from rich.console import Console
except ImportError:  # pragma: no cover - only without the cli extra
    sys.stderr.write("the lowtide CLI needs its extra: pip install 'lowtide[cli]'\n")
    raise SystemExit(2) from None

from lowtide import ConfigError, Lowtide, Settings, __version__
from lowtide.cli.output import cell
from lowtide.settings import URL_SCHEMES

__all__ = [
    "URL_HELP",
    "URL_VARIABLES",
    "NamespaceOption",
    "UrlOption",
    "app",
    "configure_logging",
    "console",
    "embedded_server",
    "err_console",
    "fail",
    "option_origin",
    "say",
    "settings_with_url",
    "unreachable",
    "where_from",
    "write_json",
]

app = typer.Typer(
    help="lowtide: fewer billed Redis commands, and a ledger of every one sent.",
    no_args_is_help=True,
    add_completion=False,
)
# our own messages use markup; every untrusted value goes through output.cell() / say() as Text
console = Console(emoji=False)
#: errors go to stderr, so a command's output stays clean when it is piped
err_console = Console(emoji=False, stderr=True)

#: where a command's ``--url`` comes from when it is not given (the first one set wins)
URL_VARIABLES = ["LOWTIDE_REDIS_URL", "REDIS_URL"]
#: the URL forms the settings accept, for ``--url``'s help
URL_HELP = ", ".join(f"{scheme}://" for scheme in URL_SCHEMES)

UrlOption = Annotated[
    str | None,
    typer.Option(help=f"Redis URL ({URL_HELP})", envvar=URL_VARIABLES),
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


def fail(message: object, code: int = 2) -> NoReturn:
    """Print an error (verbatim, to stderr) and exit with ``code``."""
    err_console.print(cell(message, "red"))
    raise typer.Exit(code)


def option_origin(ctx: typer.Context, name: str) -> str | None:
    """What supplied the option ``name`` (its parameter name, e.g. ``url``) of the command
    ``ctx`` runs: the environment variable it was read from (the first of its variables that is
    set and not empty, as typer reads them), the option as typed on the command line
    (``--url``), or None (its default)."""
    param = next((p for p in ctx.command.params if p.name == name), None)
    if param is None:
        return None
    source = getattr(ctx.get_parameter_source(name), "name", None)
    if source == "ENVIRONMENT":
        envvar: Any = param.envvar
        names: list[str] = [envvar] if isinstance(envvar, str) else list(envvar or ())
        return next((var for var in names if os.environ.get(var)), None)
    if source == "COMMANDLINE" and param.opts:
        return max(param.opts, key=len)  # --url rather than -u
    return None


def where_from(ctx: typer.Context, message: str, options: Iterable[str]) -> str:
    """``message`` (``"setting: what is wrong"``) naming what supplied the setting when it is
    one of ``options`` (parameters of the command ``ctx`` runs): ``"REDIS_URL: url: ..."`` for
    an environment variable (as :meth:`Settings.from_env` names its own), ``"--url: ..."``
    for the command line; unchanged otherwise."""
    setting, sep, rest = message.partition(":")
    if not sep or setting not in set(options):
        return message
    origin = option_origin(ctx, setting)
    if origin is None:
        return message
    if origin.startswith("-"):
        return f"{origin}:{rest}"
    return f"{origin}: {message}"


def write_json(path: Path, data: Any) -> None:
    """Write a ``--json`` file: called before anything is printed that could fail."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True))


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _stopped_by_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP end the command as an exception (exit code 128 + signal), so what it
    started (the embedded server) is stopped on the way out instead of being left running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = (signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, _exit_on_signal) for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
    with ValkeyServer() as server, _stopped_by_signals():
        text = f"started embedded Valkey at {server.url}"
        if announce is None:
            say(text, "dim")
        else:
            announce(text)
        yield server.url


def settings_with_url(ctx: typer.Context, url: str | None, **changes: Any) -> Settings:
    """Settings from the environment with ``--url`` and ``changes`` winning; exits 2 when they
    are invalid or there is no URL at all. An error names what supplied the value: the
    environment variable (whether :meth:`Settings.from_env` or an option of the command ``ctx``
    runs read it) or the option typed on the command line."""
    try:
        if url:
            changes["url"] = url
        settings = Settings.from_env(**changes)
    except ConfigError as exc:
        fail(where_from(ctx, str(exc), changes))
    if settings.url is None:
        fail(f"no --url and no {' / '.join(URL_VARIABLES)} (`lowtide server` starts one)")
    return settings
