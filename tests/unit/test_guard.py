"""The race guard with no server: a model-based property test of :class:`RaceGuard`, and the
cache's one guarded helper (:class:`~lowtide.cache.l2.Guarded`) always ending its tokens."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lowtide.cache.l2 import Guarded
from lowtide.invalidation.guard import RaceGuard, Token
from lowtide.modes import InvalidationMode

KEYS = ["a", "b", "c"]

ops = st.lists(
    st.one_of(
        st.tuples(st.just("begin"), st.sampled_from(KEYS)),
        st.tuples(st.just("end"), st.integers(0, 50), st.booleans()),
        st.tuples(st.just("note"), st.lists(st.sampled_from(KEYS), max_size=3)),
        st.tuples(st.just("flush")),
    ),
    max_size=80,
)


@settings(max_examples=300)
@given(ops=ops)
def test_end_reports_the_invalidations_noted_since_begin_or_none_after_a_flush(
    ops: list[tuple[object, ...]],
) -> None:
    guard = RaceGuard()
    # the model: per open command, its key, invalidations noted since, flushed since
    open_: list[tuple[str, Token, list[int]]] = []
    for op in ops:
        if op[0] == "begin":
            key = str(op[1])
            open_.append((key, guard.begin(key), [0, 0]))
        elif op[0] == "end" and open_:
            key, token, model = open_.pop(int(str(op[1])) % len(open_))
            trusted = bool(op[2])
            expected = None if model[1] or not trusted else model[0]
            assert guard.end(key, token, trusted=trusted) == expected
        elif op[0] == "note":
            keys = op[1]
            assert isinstance(keys, list)
            guard.note(keys)
            for key, _, model in open_:
                model[0] += keys.count(key)
        elif op[0] == "flush":
            guard.flush()
            for _, _, model in open_:
                model[1] = 1
        for key in KEYS:
            assert guard.in_flight(key) == sum(1 for k, _, _ in open_ if k == key)
    for key, token, _ in open_:
        guard.end(key, token, trusted=True)
    assert len(guard) == 0  # nothing left behind


def test_a_key_not_in_flight_costs_nothing_and_cannot_fill() -> None:
    guard = RaceGuard()
    guard.note(["a", "b"])
    assert len(guard) == 0
    assert guard.end("a", (0, 0), trusted=True) is None


def test_a_flush_bumps_the_generation() -> None:
    guard = RaceGuard()
    token = guard.begin("a")
    guard.flush()
    assert guard.generation == 1
    assert guard.end("a", token, trusted=True) is None
    assert guard.end("a", guard.begin("a"), trusted=True) == 0


# -- Guarded: the cache's one helper around commands whose reply may fill L1 -----------------
class Feed:
    """The race-guard half of an invalidation listener, on a real RaceGuard."""

    def __init__(self, mode: InvalidationMode = InvalidationMode.TRACKING) -> None:
        self.mode = mode
        self.healthy = True
        self.race = RaceGuard()

    def begin(self, key: str) -> tuple[int, int]:
        return self.race.begin(key)

    def end(self, key: str, token: tuple[int, int]) -> int | None:
        return self.race.end(key, token, trusted=self.healthy)


def test_guarded_reports_what_arrived_inside_the_block() -> None:
    feed = Feed()
    with Guarded(feed, ["a", "b", "c"]) as g:
        assert len(feed.race) == 3
        feed.race.note(["b", "b"])
    assert g.seen == [0, 2, 0]
    assert g.mode is InvalidationMode.TRACKING
    assert len(feed.race) == 0


def test_guarded_with_no_listener_begins_nothing_and_reports_zero() -> None:
    with Guarded(None, ["a", "b"]) as g:
        pass
    assert g.seen == [0, 0]
    assert g.mode is None


@pytest.mark.parametrize("exc", [ConnectionError("down"), KeyboardInterrupt()])
def test_guarded_ends_every_token_when_the_command_fails(exc: BaseException) -> None:
    feed = Feed()
    with pytest.raises(type(exc)), Guarded(feed, ["a", "b"]):
        raise exc
    assert len(feed.race) == 0


async def test_guarded_ends_its_token_when_the_awaiting_task_is_cancelled() -> None:
    feed = Feed()
    started = asyncio.Event()

    async def command() -> None:
        with Guarded(feed, ["a"]):
            started.set()
            await asyncio.sleep(3600)

    task = asyncio.ensure_future(command())
    await started.wait()
    assert len(feed.race) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(feed.race) == 0


def test_guarded_reports_none_after_a_flush_or_when_the_listener_is_down() -> None:
    feed = Feed()
    with Guarded(feed, ["a"]) as g:
        feed.race.flush()
    assert g.seen == [None]
    feed.healthy = False
    with Guarded(feed, ["a"]) as g:
        pass
    assert g.seen == [None]
