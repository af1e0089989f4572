"""Comparing a /metrics scrape with what the server itself counted (``INFO commandstats``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from lowtide.testing import ValkeyServer, changes, server_commands
from tests.integrations.helpers import Samples, by_label


class ServerCounts:
    """The server's command counts since this object was made, less its own INFO readings."""

    def __init__(self, server: ValkeyServer) -> None:
        self.server = server
        self.readings = 1
        self.before = server_commands(server)

    def now(self) -> dict[str, int]:
        """Commands received since the start, not counting this reading itself."""
        after = server_commands(self.server)
        out = changes(self.before, after, minus={"info": self.readings})
        self.readings += 1
        return out


async def metrics_match_server(
    scrape: Callable[[], Awaitable[Samples]], counts: ServerCounts, within: float = 20.0
) -> dict[str, int]:
    """Wait until ``lowtide_redis_commands_total`` summed by command equals the server's
    counts read just before and after the scrape (no traffic in between); returns them."""
    deadline = time.monotonic() + within
    last: tuple[dict[str, int], dict[str, int]] = ({}, {})
    while time.monotonic() < deadline:
        first = counts.now()
        samples = await scrape()
        second = counts.now()
        exported = {
            k: int(v)
            for k, v in by_label(samples, "lowtide_redis_commands_total", "command").items()
            if v
        }
        if first == second and exported == first:
            return first
        last = (exported, first)
        await asyncio.sleep(0.2)
    raise AssertionError(f"/metrics never matched the server: exported, server = {last}")
