"""Concurrent cold reads of one tenant's keys in one event-loop turn go out as one MGET:
measured in commands per 1,000 concurrent cold reads, counted by the ledger and the server."""

from __future__ import annotations

import asyncio

from lowtide import Lowtide
from lowtide.testing import ValkeyServer, changes, ledger_commands, server_commands


async def test_a_thousand_concurrent_cold_reads_cost_one_mget(
    lowtide_fresh_server: ValkeyServer,
) -> None:
    async with Lowtide(lowtide_fresh_server.url, instance="reader") as lt:
        cache = lt.cache("profiles")
        await cache.set_many({f"k{i}": i for i in range(1000)}, tenant="t1")
        cache.clear_local()
        before = ledger_commands(lt, component="cache")
        server_before = server_commands(lowtide_fresh_server)
        values = await asyncio.gather(*(cache.get(f"k{i}", tenant="t1") for i in range(1000)))
        assert values == list(range(1000))
        assert changes(before, ledger_commands(lt, component="cache")) == {"mget": 1}
        server = changes(server_before, server_commands(lowtide_fresh_server), minus={"info": 1})
        assert server == {"mget": 1}
        # and every value was kept in L1: the next 1,000 reads cost nothing
        await asyncio.gather(*(cache.get(f"k{i}", tenant="t1") for i in range(1000)))
        assert changes(before, ledger_commands(lt, component="cache")) == {"mget": 1}


async def test_each_tenant_gets_its_own_batch_and_batching_can_be_turned_off(
    lowtide_url: str,
) -> None:
    async with Lowtide(lowtide_url, instance="reader2") as lt:
        batched = lt.cache("batched")
        plain = lt.cache("plain", batch_reads=False)
        for cache in (batched, plain):
            for t in range(10):
                await cache.set_many({f"k{i}": i for i in range(100)}, tenant=f"t{t}")
            cache.clear_local()
        before = ledger_commands(lt, component="cache", command="mget")
        reads = [batched.get(f"k{i}", tenant=f"t{t}") for t in range(10) for i in range(100)]
        assert await asyncio.gather(*reads) == [i for _ in range(10) for i in range(100)]
        # one MGET per tenant: the ledger attributes each command to one tenant
        assert changes(before, ledger_commands(lt, component="cache", command="mget")) == {
            "mget": 10
        }
        gets = ledger_commands(lt, component="cache", command="get")
        reads = [plain.get(f"k{i}", tenant=f"t{t}") for t in range(10) for i in range(100)]
        await asyncio.gather(*reads)
        assert changes(gets, ledger_commands(lt, component="cache", command="get")) == {"get": 1000}
