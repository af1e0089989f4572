"""The counting connection's packing hook, with no server: the bytes redis-py packs, and each
command noted once with the attribution current while it was packed, whatever its arity."""

from __future__ import annotations

from typing import Any

import pytest
from redis.asyncio.connection import Connection

from lowtide.context import Attribution, _attribution
from lowtide.ledger import command_name
from lowtide.redis.connection import CountingConnection, _CountingMixin

ATT = Attribution("cache", "lt:c:p:*", "t1")
COMMANDS = [
    ("PING",),
    ("GET", "k"),
    (b"DEL", b"k"),
    ("INCRBY", "k", 3),
    ("HINCRBY", "h", "f", 1),
    ("SET", "k", b"v" * 9000, "PX", 5),  # a value past redis-py's buffer cutoff
    ("CLIENT TRACKING", "ON", "BCAST"),
    ("MGET", *[f"k{i}" for i in range(9)]),
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: str(a[0]))
def test_the_hook_packs_what_redis_py_packs_and_notes_the_command(args: tuple[Any, ...]) -> None:
    plain, counting = Connection(), CountingConnection()
    token = _attribution.set(ATT)
    try:
        packed = counting.pack_command(*args)
    finally:
        _attribution.reset(token)
    assert packed == plain.pack_command(*args)
    assert counting._lt_pending == [(command_name(args), ATT)]


def test_a_pipeline_notes_every_command_in_order() -> None:
    counting = CountingConnection()
    token = _attribution.set(ATT)
    try:
        packed = counting.pack_commands(COMMANDS)
    finally:
        _attribution.reset(token)
    assert packed == Connection().pack_commands(COMMANDS)
    assert counting._lt_pending == [(command_name(c), ATT) for c in COMMANDS]


class _Upper(Connection):
    """A connection class between the hook and redis-py's that changes what is packed."""

    def pack_command(self, *args: Any) -> list[bytes]:
        return super().pack_command(*(a.upper() if isinstance(a, str) else a for a in args))


class _CountingUpper(_CountingMixin, _Upper):
    pass


class _Labelled(CountingConnection):
    """A subclass whose own hook runs first, as the drop-in's labelling connection does."""

    def pack_command(self, *args: Any) -> list[bytes]:
        token = _attribution.set(ATT)
        try:
            return super().pack_command(*args)
        finally:
            _attribution.reset(token)


@pytest.mark.parametrize("args", COMMANDS[:4], ids=lambda a: str(a[0]))
def test_the_hook_hands_over_to_what_super_would_find(args: tuple[Any, ...]) -> None:
    """The next ``pack_command`` is looked up once per class: a class between the hook and
    redis-py's still packs, and a subclass's own hook still runs first (each noted once)."""
    upper = _CountingUpper()
    assert upper.pack_command(*args) == _Upper().pack_command(*args)
    assert len(upper._lt_pending) == 1
    labelled = _Labelled()
    assert labelled.pack_command(*args) == Connection().pack_command(*args)
    assert labelled._lt_pending == [(command_name(args), ATT)]
