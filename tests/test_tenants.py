"""Tenant discovery on a real server: 0 commands per known webhook, pre-warm, forget, unknowns."""

from __future__ import annotations

import asyncio

import pytest

from lowtide import InvalidKeyError, Lowtide
from lowtide.testing import ledger_total
from tests.helpers import eventually


async def test_known_external_id_costs_nothing_after_first_resolve(lowtide_url: str) -> None:
    calls: list[tuple[str, str]] = []

    async def find(connector: str, external_id: str) -> str | None:
        calls.append((connector, external_id))
        await asyncio.sleep(0.01)
        return "t1" if external_id == "T024BE7LD" else None

    async with Lowtide(lowtide_url) as lt:
        assert await lt.invalidations.wait_healthy(5)
        tenants = lt.tenants(loader=find)
        first = await asyncio.gather(*(tenants.resolve("slack", "T024BE7LD") for _ in range(20)))
        assert first == ["t1"] * 20
        assert calls == [("slack", "T024BE7LD")]  # single-flight: one database lookup
        # 1 GET (miss) + 1 SET (share with the fleet)
        assert ledger_total(lt, component="tenants") == 2
        await asyncio.sleep(0.05)  # the SET's own invalidation arrives
        assert await tenants.resolve("slack", "T024BE7LD") == "t1"  # at most 1 GET re-read
        assert ledger_total(lt, component="tenants") <= 3
        spent = ledger_total(lt, component="tenants")
        for _ in range(1000):
            assert await tenants.resolve("slack", "T024BE7LD") == "t1"
        assert ledger_total(lt, component="tenants") == spent  # 1000 webhooks: 0 commands
        # unknown ids are remembered as unknown for negative_ttl
        assert await tenants.resolve("slack", "UNKNOWN") is None
        assert await tenants.resolve("slack", "UNKNOWN") is None
        assert calls.count(("slack", "UNKNOWN")) == 1


async def test_remember_on_one_machine_is_seen_by_another(lowtide_url: str) -> None:
    async def nobody(connector: str, external_id: str) -> str | None:
        return None

    async with Lowtide(lowtide_url, instance="a") as a, Lowtide(lowtide_url, instance="b") as b:
        assert await a.invalidations.wait_healthy(5)
        assert await b.invalidations.wait_healthy(5)
        ta, tb = a.tenants(loader=nobody), b.tenants()
        assert await tb.resolve("hubspot", "portal-9") is None  # b remembers "absent"
        await ta.remember("hubspot", "portal-9", "t7")  # OAuth finished on machine a
        cache_b = tb.cache("hubspot")
        await eventually(lambda: cache_b.stats.invalidations >= 1)
        assert await tb.resolve("hubspot", "portal-9") == "t7"
        spent = ledger_total(b, component="tenants")
        assert await tb.resolve("hubspot", "portal-9") == "t7"
        assert ledger_total(b, component="tenants") == spent
        await ta.forget("hubspot", "portal-9")
        await eventually(lambda: cache_b.stats.invalidations >= 2)
        assert await tb.resolve("hubspot", "portal-9") is None
        # connectors are separate namespaces
        await ta.remember("slack", "portal-9", "t8")
        assert await tb.resolve("hubspot", "portal-9") is None
        assert await tb.resolve("slack", "portal-9") == "t8"


async def test_bad_tenant_ids_are_refused(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url) as lt:
        tenants = lt.tenants()
        with pytest.raises(InvalidKeyError):
            await tenants.remember("slack", "x", "")
        with pytest.raises(InvalidKeyError):
            await tenants.remember("slack", "x", "t" * 300)
        await tenants.remember("slack", "id:with{braces}", "t:1")
        assert await tenants.resolve("slack", "id:with{braces}") == "t:1"
        assert await tenants.resolve("slack", "id:with{braces") is None
