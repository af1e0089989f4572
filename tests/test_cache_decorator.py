"""@cache.cached() on 4 hubs: one load for the fleet, single-flight, negative caching, key=,
fail-safe, tenants, invalidation and tags, as get_or_load does them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest

from lowtide import ConfigError, Lowtide, TenantRequired, build_key, tenant_scope
from lowtide.testing import ValkeyServer, changes, ledger_commands
from tests.helpers import eventually


@asynccontextmanager
async def four(url: str) -> AsyncIterator[list[Lowtide]]:
    async with AsyncExitStack() as stack:
        hubs = [await stack.enter_async_context(Lowtide(url, instance=f"h{i}")) for i in range(4)]
        for hub in hubs:
            assert await hub.ready(10)
        yield hubs


async def test_four_hubs_share_one_load(lowtide_url: str) -> None:
    loads: list[tuple[str, int]] = []
    async with four(lowtide_url) as hubs:
        fns = []
        for hub in hubs:
            users = hub.cache("users", purgeable=True)

            @users.cached(ttl=60, tags=lambda user_id, **_: (f"user:{user_id}",))
            async def get_user(user_id: int, *, full: bool = False) -> dict[str, Any]:
                loads.append((str(user_id), int(full)))
                return {"id": user_id, "full": full}

            fns.append(get_user)
        with tenant_scope("t1"):
            assert await fns[0](7) == {"id": 7, "full": False}
            for fn in fns[1:]:
                assert await fn(7) == {"id": 7, "full": False}  # from Redis: no load
                assert await fn(user_id=7, full=False) == {"id": 7, "full": False}  # same key
            assert loads == [("7", 0)]
            await fns[0](7)  # where its own fill is pushed back (echo path): read once more
            before = [ledger_commands(h, component="cache") for h in hubs]
            for fn in fns:
                for _ in range(50):
                    await fn(7)
            after = [ledger_commands(h, component="cache") for h in hubs]
            assert all(changes(b, a) == {} for b, a in zip(before, after, strict=True))
            assert await fns[1](7, full=True) == {"id": 7, "full": True}  # another key
            assert len(loads) == 2
            # invalidate by arguments: every hub loads again once
            await fns[2].invalidate(7)
            for hub, fn in zip(hubs, fns, strict=True):
                await eventually(
                    lambda hub=hub: (
                        hub.cache("users", purgeable=True).peek(fns[0].key(7), tenant="t1") is None
                    ),
                    within=1.0,
                )
                assert await fn(7) == {"id": 7, "full": False}
            assert 3 <= len(loads) <= 6
            # tags from the arguments: purge_tag drops them everywhere
            n = len(loads)
            await hubs[3].cache("users", purgeable=True).purge_tag("user:7")
            # the purge's push reaches hub 0 (its own fill is no longer read back, so nothing
            # else gives the push time to arrive before the next call)
            await eventually(
                lambda: (
                    hubs[0].cache("users", purgeable=True).peek(fns[0].key(7), tenant="t1") is None
                ),
                within=1.0,
            )
            assert await fns[0](7) == {"id": 7, "full": False}
            assert len(loads) == n + 1


async def test_single_flight_negative_caching_and_fail_safe(lowtide_url: str) -> None:
    async with Lowtide(lowtide_url) as lt:
        assert await lt.ready(10)
        c = lt.cache("lookups", max_staleness=0.2, ttl=0.2)
        calls = 0
        fail = False

        @c.cached(tenant="org")
        async def lookup(org: str, item: str) -> str | None:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.01)
            if fail:
                raise RuntimeError("upstream down")
            return None if item == "missing" else f"{org}/{item}"

        got = await asyncio.gather(*(lookup("acme", "x") for _ in range(50)))
        assert got == ["acme/x"] * 50
        assert calls == 1
        assert await lookup("acme", "missing") is None
        assert await lookup("acme", "missing") is None  # remembered: no second call
        assert calls == 2
        assert await lookup("globex", "x") == "globex/x"  # another tenant, another key
        assert calls == 3
        fail = True
        await eventually(lambda: c.peek(lookup.key("acme", "x"), tenant="acme") is None)
        assert await lookup("acme", "x") == "acme/x"  # fail-safe: the last good value
        with pytest.raises(RuntimeError):
            await lookup("initech", "x")  # nothing to fall back on


async def test_tenants_and_misuse(lowtide_server: ValkeyServer, lowtide_url: str) -> None:
    async with Lowtide(lowtide_url) as lt:
        c = lt.cache("per-tenant")

        @c.cached()
        async def f(x: int) -> int:
            return x * 2

        with pytest.raises(TenantRequired):
            await f(1)
        with tenant_scope("t1"):
            assert await f(2) == 4
        shared = lt.cache("shared", per_tenant=False)
        with pytest.raises(ConfigError, match="per_tenant=False"):
            shared.cached(tenant="x")(f)
        with pytest.raises(ConfigError, match="purgeable"):
            c.cached(tags=("a",))(f)
        with pytest.raises(TypeError, match="async"):
            c.cached()(lambda: 1)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="no parameter"):
            c.cached(exclude=("nope",))(f)

        def factory(n: int) -> Any:
            @c.cached()
            async def made(x: int) -> int:
                return x + n

            return made

        keep = factory(1)
        with pytest.raises(ConfigError, match="name="):
            factory(2)  # a second closure with the same qualified name: would share keys
        assert keep is not None

        class Repo:
            @c.cached(exclude=("self",))
            async def get(self, user_id: int) -> dict[str, int]:
                return {"id": user_id}

        with tenant_scope("t1"):
            repo = Repo()
            assert await repo.get(3) == {"id": 3}
            # through an instance, key and invalidate take the instance first (as typed)
            assert repo.get.key(repo, 3) == Repo.get.key(repo, 3) == Repo.get.key(None, 3)
            assert stored(lowtide_server, "per-tenant", "t1", repo.get.key(repo, 3))
            await repo.get.invalidate(repo, 3)
            assert not stored(lowtide_server, "per-tenant", "t1", Repo.get.key(repo, 3))

        @shared.cached()
        async def rates(day: str) -> float:
            return 1.5

        assert await rates("2024-01-01") == 1.5


def stored(server: ValkeyServer, cache: str, tenant: str, key: str) -> bool:
    """Whether the server holds ``key`` of ``tenant`` in ``cache`` (asked without lowtide)."""
    return bool(server.command("EXISTS", build_key("lt", "cache", cache, tenant, key)))


async def test_key_callable(lowtide_server: ValkeyServer, lowtide_url: str) -> None:
    async with Lowtide(lowtide_url) as lt:
        assert await lt.ready(10)
        c = lt.cache("keyed")
        loads: list[tuple[int, bool]] = []

        @c.cached(key=lambda user_id, full=False: f"user:{user_id}", name="profile")
        async def profile(user_id: int, full: bool = False) -> dict[str, Any]:
            loads.append((user_id, full))
            return {"id": user_id, "full": full}

        # the stored key is the function's name and what key= returned, nothing else
        assert profile.key(7) == profile.key(7, full=True) == "profile:user:7"
        with tenant_scope("t1"):
            assert await profile(7) == {"id": 7, "full": False}
            # another argument set, the same key= value: the same entry, no second load
            assert await profile(7, full=True) == {"id": 7, "full": False}
            assert await profile(user_id=7, full=True) == {"id": 7, "full": False}
        assert loads == [(7, False)]
        assert stored(lowtide_server, "keyed", "t1", "profile:user:7")
        # invalidate by any argument set that maps to the key: gone from Redis, loaded again
        with tenant_scope("t1"):
            await profile.invalidate(7, full=True)
            assert not stored(lowtide_server, "keyed", "t1", "profile:user:7")
            assert await profile(7, full=True) == {"id": 7, "full": True}
        assert loads == [(7, False), (7, True)]

        # key= must return a str: anything else is a clear TypeError, before any load
        @c.cached(key=lambda n: n, name="bad")
        async def bad(n: int) -> int:
            loads.append((n, False))
            return n

        keys_before = lowtide_server.command("DBSIZE")
        with tenant_scope("t1"), pytest.raises(TypeError, match="key= returned int, expected str"):
            await bad(5)
        with pytest.raises(TypeError, match="key= returned int"):
            bad.key(5)
        with pytest.raises(TypeError, match="key= returned int"):
            await bad.invalidate(5)
        assert len(loads) == 2
        assert lowtide_server.command("DBSIZE") == keys_before
        with pytest.raises(ConfigError, match="key:"):
            c.cached(key="user:{user_id}")(profile)  # type: ignore[arg-type]


async def test_tenant_selector_function(lowtide_server: ValkeyServer, lowtide_url: str) -> None:
    async with Lowtide(lowtide_url) as lt:
        assert await lt.ready(10)
        c = lt.cache("selected")
        loads: list[str] = []

        @c.cached(tenant=lambda path: path.split("/")[0] or None)
        async def document(path: str) -> str:
            loads.append(path)
            return path.upper()

        k = document.key("acme/readme")
        assert await document("acme/readme") == "ACME/README"  # no tenant_scope needed
        assert stored(lowtide_server, "selected", "acme", k)
        with tenant_scope("globex"):  # the selector wins over tenant_scope()
            assert await document("acme/readme") == "ACME/README"
        assert loads == ["acme/readme"]
        assert not stored(lowtide_server, "selected", "globex", k)
        # a path of another tenant: stored under that tenant
        assert await document("globex/readme") == "GLOBEX/README"
        assert stored(lowtide_server, "selected", "globex", document.key("globex/readme"))
        # a selector returning None falls back to tenant_scope(), and needs it
        with tenant_scope("t9"):
            assert await document("/shared") == "/SHARED"
        assert stored(lowtide_server, "selected", "t9", document.key("/shared"))
        with pytest.raises(TenantRequired):
            await document("/shared")
        # invalidate finds the tenant the same way
        await document.invalidate("acme/readme")
        assert not stored(lowtide_server, "selected", "acme", k)
        assert await document("acme/readme") == "ACME/README"
        assert loads == ["acme/readme", "globex/readme", "/shared", "acme/readme"]

        @c.cached(tenant=lambda org_id: org_id)
        async def by_number(org_id: int) -> int:
            loads.append(str(org_id))
            return org_id

        with pytest.raises(TypeError, match="tenant= returned int, expected str or None"):
            await by_number(3)
        assert len(loads) == 4
