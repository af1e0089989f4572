"""Hostile input to the drop-in client: keys with separators, braces, newlines, bytes that are
not UTF-8, huge keys and values, prefixes and options that must be refused."""

from __future__ import annotations

import pytest

from lowtide import ConfigError, Lowtide
from lowtide.redis.tracking import MAX_KEY_BYTES
from lowtide.testing import changes, ledger_commands
from tests.deployments import PUBSUB
from tests.dropin.helpers import dropin, plain
from tests.helpers import eventually

ODD_KEYS: list[str | bytes | int] = [
    "d:a:b:c",
    "d:{tag}x",
    "d:%3A",
    "d:with space",
    "d:tab\tand\x00nul",
    "d:\u00e9t\u00e9:\u6771\u4eac",
    b"d:\xff\xfe not utf-8",
    "d:" + "x" * 60_000,
]


@pytest.mark.parametrize("key", ODD_KEYS, ids=lambda k: repr(k)[:20])
async def test_odd_keys_are_held_and_invalidated(lowtide_url: str, key: str | bytes) -> None:
    other = plain(lowtide_url)
    async with dropin(lowtide_url) as (lt, r):
        await other.set(key, "1")
        assert await r.get(key) == b"1"
        before = ledger_commands(lt, component="app")
        assert await r.get(key) == b"1"
        assert await r.exists(key) == 1
        assert changes(before, ledger_commands(lt, component="app")) == {}  # held
        seen = r.lt_engine.info()["invalidations"]
        await other.set(key, "2")  # a foreign write: pushed for exactly this key
        await eventually(lambda: r.lt_engine.info()["invalidations"] > seen, within=1.0)
        assert await r.get(key) == b"2"
        await r.set(key, "3")  # its own write
        assert await r.get(key) == b"3"
    await other.aclose()


async def test_keys_the_listener_cannot_name_are_never_held(lowtide_url: str) -> None:
    huge = "d:" + "k" * (MAX_KEY_BYTES + 10)
    other = plain(lowtide_url)
    await other.set(huge, "1")
    async with dropin(lowtide_url) as (lt, r):
        for _ in range(3):
            assert await r.get(huge) == b"1"
        assert ledger_commands(lt, component="app") == {"get": 3}
    # pub/sub messages are newline-separated: a key with a newline is never held there
    async with dropin(lowtide_url, hub_options=PUBSUB.options) as (lt, r):
        await r.set("d:two\nlines", "1")
        for _ in range(3):
            assert await r.get("d:two\nlines") == b"1"
        assert ledger_commands(lt, component="app") == {"set": 1, "publish": 1, "get": 3}
    await other.aclose()


async def test_replies_larger_than_the_value_limit_are_not_held(lowtide_url: str) -> None:
    other = plain(lowtide_url)
    await other.set("d:big", b"x" * 2_000_000)
    async with dropin(lowtide_url) as (lt, r):
        for _ in range(2):
            assert len(await r.get("d:big")) == 2_000_000
        assert ledger_commands(lt, component="app") == {"get": 2}
    await other.aclose()


async def test_a_value_naming_a_cached_key_only_costs_a_read(lowtide_url: str) -> None:
    async with dropin(lowtide_url) as (lt, r):
        await r.set("d:b", "x")
        assert await r.get("d:b") == b"x"
        await r.set("d:a", "d:b")  # the value looks like a cached key: it is dropped too
        assert await r.get("d:b") == b"x"
        assert ledger_commands(lt, component="app")["get"] <= 2


async def test_prefixes_and_options_that_must_be_refused(lowtide_url: str) -> None:
    lt = Lowtide(lowtide_url)
    for bad in [("lt:",), ("l",), ("",), "d:", (b"d:",), ("lt:c:x",)]:
        with pytest.raises(ConfigError):
            lt.redis(bad)
    for option in ("host", "port", "db", "password", "username", "connection_pool", "url"):
        with pytest.raises(ConfigError, match=option):
            lt.redis(("d:",), **{option: "x"})
    with pytest.raises(ConfigError):
        lt.redis(("d:",), component="")
    # overlapping prefixes are merged (the server refuses overlapping tracking prefixes)
    lt.redis(("d:", "d:x:", "e:"))
    lt.redis(("e:f:", "g"))
    assert [p for p in lt.invalidations.prefixes if not p.startswith("lt:")] == ["d:", "e:", "g"]
    await lt.start()
    assert await lt.ready(10)
    await lt.aclose()
