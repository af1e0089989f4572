"""Which servers get cache writes over the NOLOOP writer (redis/redis#9116: last modifier)."""

from __future__ import annotations

import pytest

from lowtide.redis.writer import noloop_safe


@pytest.mark.parametrize(
    ("info", "safe"),
    [
        ({"redis_version": "7.2.4", "server_name": "valkey", "valkey_version": "9.1.2"}, True),
        ({"redis_version": "7.2.4", "valkey_version": "7.2.5"}, True),
        ({"redis_version": "7.0.0"}, True),
        ({"redis_version": "8.2.1"}, True),
        ({"redis_version": "6.2.5"}, True),
        ({"redis_version": "6.2.14"}, True),
        ({"redis_version": "6.2.4"}, False),  # raxTryInsert: the first modifier wins
        ({"redis_version": "6.2.0"}, False),
        ({"redis_version": "6.0.15"}, True),
        ({"redis_version": "6.0.14"}, False),
        ({"redis_version": "5.0.7"}, False),
        ({"redis_version": "7.2.0", "dragonfly_version": "df-v1.20.0"}, False),
        ({"redis_version": "nonsense"}, False),
        ({}, False),  # INFO refused (ACL): cannot tell
    ],
)
def test_only_servers_known_to_remember_the_last_modifier(info: dict[str, str], safe: bool) -> None:
    assert noloop_safe(info) is safe
