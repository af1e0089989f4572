"""Purges and tags on 4 hubs: a tenant, a tag or the whole cache dropped everywhere within the
staleness bound, in O(1) commands, leaving everything else held (0 commands)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest

from lowtide import Cache, ConfigError, Lowtide, build_key
from lowtide.cache.purge import MARGIN_MS
from lowtide.testing import ValkeyServer, changes, ledger_commands, server_commands
from tests.deployments import KEYSPACE, PUBSUB, TRACKING_RESP2, ListenerMode
from tests.helpers import eventually, listeners_caught_up

MODES = [
    pytest.param(TRACKING_RESP2, id="tracking"),
    pytest.param(PUBSUB, id="pubsub"),
    pytest.param(KEYSPACE, id="keyspace"),
]
N = 200  # entries per tenant


@asynccontextmanager
async def fleet(url: str, mode: ListenerMode, n: int = 4) -> AsyncIterator[list[Lowtide]]:
    async with AsyncExitStack() as stack:
        hubs = [
            await stack.enter_async_context(Lowtide(url, instance=f"h{i}", **mode.options))
            for i in range(n)
        ]
        for hub in hubs:
            assert await hub.ready(10)
        yield hubs


def caches(hubs: list[Lowtide], **options: Any) -> list[Cache]:
    return [hub.cache("offboard", purgeable=True, **options) for hub in hubs]


async def warm(hubs: list[Lowtide], cs: list[Cache], tenants: tuple[str, ...]) -> None:
    """Every hub holds every entry of ``tenants`` in L1."""
    for t in tenants:
        await cs[0].set_many({f"k{i}": {"t": t, "i": i} for i in range(N)}, tenant=t, tags=())
    await listeners_caught_up(hubs)  # the writes' messages, before the reads that fill L1
    for c in cs:
        for t in tenants:
            got = await c.get_many([f"k{i}" for i in range(N)], tenant=t)
            assert all(v == {"t": t, "i": i} for i, v in enumerate(got.values()))
            got = await c.get_many([f"k{i}" for i in range(N)], tenant=t)  # now held


def held(c: Cache, tenant: str) -> int:
    return sum(c.peek(f"k{i}", tenant=tenant) is not None for i in range(N))


@pytest.mark.parametrize("mode", MODES)
async def test_a_tenant_purge_reaches_every_hub(lowtide_url: str, mode: ListenerMode) -> None:
    async with fleet(lowtide_url, mode) as hubs:
        cs = caches(hubs)
        await warm(hubs, cs, ("t1", "t2"))
        before = ledger_commands(hubs[0], component="cache")
        await cs[0].purge(tenant="t1")
        # O(1): the tenant's marker and the "a tenant was purged" flag (+1 PUBLISH)
        spent = changes(before, ledger_commands(hubs[0], component="cache"))
        assert spent == ({"set": 2, "publish": 1} if mode.publishes else {"set": 2})
        for c in cs:
            await eventually(lambda c=c: held(c, "t1") == 0, within=1.0)
            assert held(c, "t2") == N  # another tenant's entries stay held
        for hub, c in zip(hubs, cs, strict=True):
            before = ledger_commands(hub, component="cache")
            assert await c.get("k1", tenant="t2") == {"t": "t2", "i": 1}  # 0 commands
            assert changes(before, ledger_commands(hub, component="cache")) == {}
            # the purged tenant's values are gone everywhere, in L1 and in Redis
            assert await c.get_many(["k1", "k2"], tenant="t1") == {"k1": None, "k2": None}
            assert await c.get("k3", tenant="t1") is None
        # written again after the purge: read everywhere (no reload storm)
        loads: list[int] = []

        async def loader() -> dict[str, int]:
            loads.append(1)
            return {"fresh": 1}

        for c in cs:
            assert await c.get_or_load("k9", loader, tenant="t1") == {"fresh": 1}
        assert len(loads) == 1


@pytest.mark.parametrize("mode", MODES)
async def test_whole_cache_and_tag_purges(lowtide_url: str, mode: ListenerMode) -> None:
    async with fleet(lowtide_url, mode) as hubs:
        cs = caches(hubs)
        await cs[0].set("pro", 1, tenant="t1", tags=("plan:pro",))
        await cs[0].set("pro", 2, tenant="t2", tags=("plan:pro", "region:eu"))
        await cs[0].set("free", 3, tenant="t1", tags=("plan:free",))
        await cs[0].set("plain", 4, tenant="t1")
        for c in cs:
            for key, t in (("pro", "t1"), ("pro", "t2"), ("free", "t1"), ("plain", "t1")):
                await c.get(key, tenant=t)
        before = ledger_commands(hubs[1], component="cache")
        await cs[1].purge_tag("plan:pro")
        spent = changes(before, ledger_commands(hubs[1], component="cache"))
        assert spent == ({"hset": 1, "publish": 1} if mode.publishes else {"hset": 1})
        for c in cs:
            await eventually(lambda c=c: c.peek("pro", tenant="t1") is None, within=1.0)
            assert await c.get("pro", tenant="t1") is None
            assert await c.get("pro", tenant="t2") is None
            assert await c.get("free", tenant="t1") == 3
            assert c.peek("plain", tenant="t1") == 4  # untagged entries stay held
        await cs[2].purge()
        for c in cs:
            await eventually(lambda c=c: c.peek("plain", tenant="t1") is None, within=1.0)
            assert await c.get("free", tenant="t1") is None
            assert await c.get("plain", tenant="t1") is None


async def test_a_purge_costs_the_same_whatever_the_number_of_entries(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url) as lt:
        c = lt.cache("big", purgeable=True)
        costs = []
        for n in (10, 2000):
            t = f"t{n}"
            await c.set_many({f"k{i}": i for i in range(n)}, tenant=t)
            before = ledger_commands(lt)
            await c.purge(tenant=t)
            costs.append(changes(before, ledger_commands(lt)))
            assert await c.get("k1", tenant=t) is None
        assert costs[0] == costs[1] == {"set": 2}


async def counted(
    server: ValkeyServer, hubs: list[Lowtide], action: Callable[[], Awaitable[None]]
) -> tuple[dict[str, int], list[dict[str, int]]]:
    """Run ``action`` and wait for it to reach every hub; return what the server received
    that no hub spent outside the cache (a listener keepalive can fall in the window), and
    what each hub's ledger says its caches spent. The server's count must equal the ledgers'."""
    server0 = server_commands(server)
    total0 = [ledger_commands(h) for h in hubs]
    cache0 = [ledger_commands(h, component="cache") for h in hubs]
    await action()
    received = Counter(changes(server0, server_commands(server), minus={"info": 1}))
    total = sum(
        (Counter(changes(b, ledger_commands(h))) for b, h in zip(total0, hubs, strict=True)),
        Counter(),
    )
    assert received == total  # the ledgers account for every command the server received
    spent = [
        changes(b, ledger_commands(h, component="cache")) for b, h in zip(cache0, hubs, strict=True)
    ]
    background = total - sum((Counter(x) for x in spent), Counter())
    return dict(received - background), spent


@pytest.mark.parametrize("mode", MODES)
async def test_each_purge_costs_what_the_docs_say(
    lowtide_server: ValkeyServer, lowtide_url: str, mode: ListenerMode
) -> None:
    """docs/cache.md's table, counted by the server: purge_tag 1 HSET, purge(tenant=) 2 SET,
    purge() 1 SET, each +1 PUBLISH in pub/sub mode; the hubs that hear of it spend nothing."""
    publish = {"publish": 1} if mode.publishes else {}
    async with fleet(lowtide_url, mode) as hubs:
        cs = caches(hubs)
        await warm(hubs, cs, ("t1", "t2"))
        for c in cs:
            await c.set("tagged", 1, tenant="t2", tags=("plan:pro",))

        async def tag() -> None:
            await cs[1].purge_tag("plan:pro")
            for c in cs:
                await eventually(lambda c=c: c.peek("tagged", tenant="t2") is None, within=1.0)

        async def tenant() -> None:
            await cs[1].purge(tenant="t1")
            for c in cs:
                await eventually(lambda c=c: held(c, "t1") == 0, within=1.0)

        async def everything() -> None:
            await cs[1].purge()
            for c in cs:
                await eventually(lambda c=c: held(c, "t2") == 0, within=1.0)

        for action, cost in (
            (tag, {"hset": 1}),
            (tenant, {"set": 2}),
            (everything, {"set": 1}),
        ):
            assert all(held(c, "t2") == N for c in cs)  # the hubs hold entries until purge()
            received, spent = await counted(lowtide_server, hubs, action)
            assert received == {**cost, **publish}, action.__name__
            assert spent == [{}, {**cost, **publish}, {}, {}], action.__name__
        for c in cs:
            assert await c.get("k1", tenant="t2") is None


async def test_a_tag_purge_costs_the_same_whatever_the_number_of_entries(
    lowtide_server: ValkeyServer, lowtide_url: str
) -> None:
    async with Lowtide(lowtide_url) as lt:
        assert await lt.ready(10)
        c = lt.cache("big-tags", purgeable=True)
        costs = []
        for n in (10, 2000):
            tag = f"batch:{n}"
            await c.set_many({f"k{n}:{i}": i for i in range(n)}, tenant="t1", tags=(tag,))
            await c.set("other", n, tenant="t1", tags=("batch:other",))
            assert await c.get(f"k{n}:1", tenant="t1") == 1

            async def purge(tag: str = tag) -> None:
                await c.purge_tag(tag)

            received, (spent,) = await counted(lowtide_server, [lt], purge)
            assert received == spent
            costs.append(spent)
            assert await c.get(f"k{n}:1", tenant="t1") is None
            assert await c.get(f"k{n}:{n - 1}", tenant="t1") is None
            assert await c.get("other", tenant="t1") == n  # another tag: still readable
        assert costs[0] == costs[1] == {"hset": 1}


async def test_what_reads_of_a_purgeable_cache_cost(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url) as lt:
        assert await lt.ready(10)
        c = lt.cache("costs", purgeable=True)
        await c.set("a", 1, tenant="t1")
        c.clear_local()
        before = ledger_commands(lt, component="cache")
        assert await c.get("a", tenant="t1") == 1
        # the first L2 read in this process reads the markers once: 1 MGET + 1 HGETALL
        assert changes(before, ledger_commands(lt, component="cache")) == {
            "get": 1,
            "mget": 1,
            "hgetall": 1,
        }
        before = ledger_commands(lt, component="cache")
        c.clear_local()
        assert await c.get("a", tenant="t1") == 1  # markers held: only the value's GET
        for _ in range(100):
            assert await c.get("a", tenant="t1") == 1  # L1: nothing
        assert changes(before, ledger_commands(lt, component="cache")) == {"get": 1}


async def test_a_load_that_overlaps_a_purge_is_not_kept(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url) as lt:
        assert await lt.ready(10)
        c = lt.cache("race", purgeable=True)
        started, release = asyncio.Event(), asyncio.Event()
        loads = 0

        async def slow() -> str:
            nonlocal loads
            loads += 1
            started.set()
            await release.wait()
            return f"v{loads}"

        pending = asyncio.create_task(c.get_or_load("k", slow, tenant="t1"))
        await started.wait()
        await c.purge(tenant="t1")  # the tenant is offboarded while its data was being read
        release.set()
        assert await pending == "v1"  # the caller still gets what it loaded
        started.clear()
        assert await c.get_or_load("k", slow, tenant="t1") == "v2"  # not kept: loaded again
        assert await c.get_or_load("k", slow, tenant="t1") == "v2"


async def test_misuse_is_refused(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url) as lt:
        plain = lt.cache("plain")
        with pytest.raises(ConfigError, match="purgeable=True"):
            await plain.purge(tenant="t1")
        with pytest.raises(ConfigError, match="purgeable"):
            await plain.set("k", 1, tenant="t1", tags=("x",))
        c = lt.cache("p", purgeable=True)
        with pytest.raises(ConfigError):
            await c.set("k", 1, tenant="t1", tags="plan:pro")  # a str is not a tuple of tags
        with pytest.raises(ConfigError, match="ttl"):
            await c.set("k", 1, tenant="t1", ttl=10 * 86_400)
        shared = lt.cache("shared", purgeable=True, per_tenant=False)
        with pytest.raises(Exception, match="per_tenant=False"):
            await shared.purge(tenant="t1")
        await shared.set("k", 1)
        await shared.purge()
        assert await shared.get("k") is None


async def test_planted_markers_never_break_reads(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url) as lt:
        assert await lt.ready(10)
        c = lt.cache("hostile", purgeable=True)
        await c.set("k", 1, tenant="t1", tags=("x",))
        marker = "purge.cache.hostile"
        planted = {
            build_key("lt", "control", marker, None, "all"): "not a time",
            build_key("lt", "control", marker, None, "tenants"): "9" * 40,
            build_key("lt", "control", marker, "t1", "tenant"): "-5",
        }
        for key, value in planted.items():
            await lt.gateway.client.set(key, value)
        await lt.gateway.client.set(build_key("lt", "control", marker, None, "tags"), "string")
        await eventually(lambda: c.peek("k", tenant="t1") is None, within=1.0)
        assert await c.get("k", tenant="t1") == 1  # every marker ignored (and counted)
        assert c._purge is not None
        assert c._purge.invalid >= 4


def test_the_margin_is_documented() -> None:
    assert MARGIN_MS == 1000  # docs/cache.md states it
