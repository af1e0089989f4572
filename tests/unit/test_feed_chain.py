"""Which invalidation feed ``auto`` settles on (pure: lowtide.invalidation.feeds)."""

from __future__ import annotations

import pytest

from lowtide.errors import LowtideError, RedisCommandError, RedisUnavailable
from lowtide.invalidation.feeds import FeedChain
from lowtide.invalidation.probes import SelfTestFailed

REFUSED_TRACKING = RedisCommandError("NOPERM no CLIENT TRACKING", command="client|tracking")
REFUSED_CONFIG = RedisCommandError("NOPERM config", command="config")


def test_auto_tries_tracking_then_keyspace_then_pubsub() -> None:
    chain = FeedChain("auto", "redis")
    assert chain.current == "tracking"
    assert chain.fall_back(REFUSED_TRACKING) is not None
    assert chain.current == "keyspace"
    assert chain.fall_back(REFUSED_CONFIG) is not None
    assert chain.current == "pubsub"
    assert chain.fall_back(REFUSED_CONFIG) is None  # nothing left: keep retrying
    assert chain.current == "pubsub"


def test_auto_on_upstash_starts_with_keyspace() -> None:
    chain = FeedChain("auto", "upstash")
    assert chain.current == "keyspace"
    why = chain.fall_back(SelfTestFailed("self-test failed"), selftest=True)
    assert why is not None
    assert "keyspace notifications unavailable" in why
    assert chain.current == "pubsub"


@pytest.mark.parametrize("setting", ["tracking", "keyspace", "pubsub", "ttl"])
def test_an_explicit_setting_never_moves(setting: str) -> None:
    chain = FeedChain(setting, "redis")
    assert chain.fall_back(REFUSED_TRACKING) is None
    assert chain.fall_back(REFUSED_CONFIG) is None
    assert chain.current == setting


def test_outages_and_proven_feeds_are_kept() -> None:
    chain = FeedChain("auto", "redis")
    # an outage is not a refusal; a failed self-test does not prove tracking is absent
    assert chain.fall_back(RedisUnavailable("connection refused")) is None
    assert chain.fall_back(SelfTestFailed("slow"), selftest=True) is None
    assert chain.current == "tracking"
    chain.proven = True  # it worked once in this process: later errors are outages
    assert chain.fall_back(REFUSED_TRACKING) is None
    assert chain.current == "tracking"


def test_a_feed_refused_with_an_unrelated_error_is_kept() -> None:
    chain = FeedChain("auto", "redis")
    assert chain.fall_back(RedisCommandError("OOM", command="set")) is None
    assert chain.fall_back(LowtideError("listener stopped")) is None
    assert chain.current == "tracking"
