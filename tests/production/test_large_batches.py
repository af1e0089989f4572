"""A batch that takes longer than ``op_timeout`` only because it is large is not an outage: a
round trip's deadline grows with the commands or keys it carries (``gateway.PER_ITEM``).

``op_timeout`` is set to 50 ms so that a 20,000-key batch (hundreds of ms to encode, run and
parse in Python) would blow it on any machine; before the allowance, each of these hubs
degraded and the batch was applied to L1 only."""

from __future__ import annotations

import pytest

from lowtide import Lowtide, Mode
from lowtide.testing import ValkeyServer, changes, ledger_commands
from tests.helpers import eventually

N = 20_000


@pytest.mark.parametrize("invalidation", ["tracking", "pubsub"])
async def test_a_twenty_thousand_key_batch_is_not_read_as_an_outage(
    lowtide_fresh_server: ValkeyServer, invalidation: str
) -> None:
    server = lowtide_fresh_server
    async with (
        Lowtide(server.url, invalidation=invalidation, instance="a", op_timeout=0.05) as a,
        Lowtide(server.url, invalidation=invalidation, instance="b", op_timeout=0.05) as b,
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
        got = await cb.get_many([f"k{i}" for i in range(N)], tenant="t")
        assert got == {f"k{i}": i for i in range(N)}
        assert (a.mode, b.mode) == (Mode.DISTRIBUTED, Mode.DISTRIBUTED)
        for hub in (a, b):
            assert [c.reason for c in hub.history if c.reason == "failure"] == []
