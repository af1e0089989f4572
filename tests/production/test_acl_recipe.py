"""The ACL recipe of docs/security.md, applied verbatim to a real server: lowtide works with
exactly those permissions, and the user can touch nothing outside lowtide's namespace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lowtide import Lowtide, Mode, RedisCommandError
from lowtide.context import Attribution
from lowtide.testing import ValkeyServer

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def recipe(which: int = 0) -> list[str]:
    """The ``ACL SETUSER`` line of the doc's recipe block ``which`` (0: every mode; 1: what
    keyspace notifications add), as arguments."""
    text = DOC.read_text()
    blocks = re.findall(r"```\n(ACL SETUSER lowtide .*?)\n```", text, re.S)
    assert len(blocks) == 2, "docs/security.md has the ACL recipe and its keyspace addition"
    return blocks[which].replace("\\\n", " ").split()


@pytest.mark.parametrize("invalidation", ["tracking", "pubsub", "keyspace"])
async def test_lowtide_runs_with_exactly_the_documented_permissions(invalidation: str) -> None:
    with ValkeyServer() as server:
        args = recipe()
        assert args[:3] == ["ACL", "SETUSER", "lowtide"]
        server.command(*args)
        if invalidation == "keyspace":
            server.command(*recipe(1))
        url = f"redis://lowtide:change-me@{server.host}:{server.port}/0"
        async with Lowtide(url, invalidation=invalidation, fleet_view=True) as lt:
            assert lt.mode is Mode.DISTRIBUTED
            assert await lt.ready(5)
            assert lt.health()["invalidation"]["mode"] == invalidation
            cache = lt.cache("profiles")
            await cache.set("k", {"v": 1}, tenant="t1")
            assert await cache.get_many(["k"], tenant="t1") == {"k": {"v": 1}}
            await cache.delete("k", tenant="t1")
            tenants = lt.tenants()
            await tenants.remember("slack", "T1", "t1")
            assert await tenants.resolve("slack", "T1") == "t1"
            limiter = lt.rate_limiter("api", limit=5, per=60)
            bucket = lt.rate_limiter("tb", limit=5, per=60, algorithm="token_bucket")
            assert (await limiter.acquire("t1")).allowed
            assert (await bucket.acquire("t1")).allowed
            # decided through Redis, not locally after a refused command
            assert limiter.info()["bad_state"] == bucket.info()["bad_state"] == 0
            await limiter.penalize("t1", retry_after=1)
            breaker = lt.circuit_breaker("crm", min_calls=1, open_for=1)
            async with breaker.guard("t1"):
                pass
            quotas = lt.quotas({"pro": 10**6}, lambda t: "pro", flush_interval=3600)
            await quotas.flush()
            assert await quotas.fleet_total("t1") > 0
            await lt.fleet.beat()
            assert lt.publisher is not None
            await lt.publisher.publish()
            assert lt.mode is Mode.DISTRIBUTED  # nothing above was refused
            # ... and nothing outside the namespace is reachable
            outside = Attribution("test", "-", None)
            for command in (("GET", "billing:secrets"), ("FLUSHALL",), ("KEYS", "*")):
                with pytest.raises(RedisCommandError) as refused:
                    await lt.gateway.call(outside, *command)
                assert refused.value.code == "NOPERM", command
