"""The key builder's tenant isolation on a real server (its pure properties: unit/test_keys.py)."""

from __future__ import annotations

from lowtide import Lowtide, build_key
from lowtide.context import Attribution
from tests.unit.test_keys import HOSTILE


async def test_hostile_tenants_are_isolated_on_a_real_server(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url, fleet_switch=False) as lt:
        att = Attribution("test", "lt:z:iso:*")
        for i, tenant in enumerate(HOSTILE):
            await lt.gateway.call(att, "SET", build_key("lt", "test", "iso", tenant, "k"), str(i))
        for i, tenant in enumerate(HOSTILE):
            got = await lt.gateway.call(att, "GET", build_key("lt", "test", "iso", tenant, "k"))
            assert got == str(i).encode()
        assert await lt.gateway.call(att, "DBSIZE") == len(HOSTILE)
