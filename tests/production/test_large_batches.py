"""A batch that takes longer than ``op_timeout`` only because it is large is not an outage: a
round trip's deadline grows with the commands or keys it carries
(``lowtide.redis.deadline.PER_ITEM``).

The writer's hub talks through a proxy that delays every chunk of bytes by 10 ms, one after the
other, like a slow link: a command's round trip takes 20 ms, well inside ``op_timeout`` (300 ms),
while a 40,000-key batch (megabytes, tens of chunks) takes longer than that whatever the CPU.
Before the allowance, the hub degraded and the batch was applied to its memory only; with an
allowance per command only, the backplane's PUBLISH of the 40,000 keys (4 commands, ~1 MB)
still timed out about one run in two."""

from __future__ import annotations

import pytest

from lowtide import Lowtide, Mode
from lowtide.testing import FaultProxy, ValkeyServer, changes, ledger_commands
from tests.helpers import eventually

N = 40_000


@pytest.mark.parametrize("invalidation", ["tracking", "pubsub"])
async def test_a_forty_thousand_key_batch_over_a_slow_link_is_not_read_as_an_outage(
    proxied: tuple[ValkeyServer, FaultProxy], invalidation: str
) -> None:
    server, proxy = proxied
    proxy.set_latency(0.01)
    async with (
        Lowtide(proxy.url, invalidation=invalidation, instance="a", op_timeout=0.3) as a,
        Lowtide(server.url, invalidation=invalidation, instance="b") as b,
    ):
        assert await a.invalidations.wait_healthy(5)
        assert await b.invalidations.wait_healthy(5)
        ca, cb = a.cache("bulk"), b.cache("bulk")
        await ca.set("k7", "old", tenant="t")
        assert await cb.get("k7", tenant="t") == "old"
        before = ledger_commands(a, component="cache")
        await ca.set_many({f"k{i}": i for i in range(N)}, tenant="t")
        assert changes(before, ledger_commands(a, component="cache"))["set"] == N
        # every value is in Redis, and the other hub heard that its copy is gone
        assert int(server.command("DBSIZE")) >= N
        await eventually(lambda: cb.peek("k7", tenant="t") is None)
        ca.clear_local()
        got = await ca.get_many([f"k{i}" for i in range(N)], tenant="t")  # one MGET, slow link
        assert got == {f"k{i}": i for i in range(N)}
        assert a.mode is Mode.DISTRIBUTED
        assert [c for c in a.history if c.reason == "failure"] == []
