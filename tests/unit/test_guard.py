"""The race guard with no server: a model-based property test of :class:`RaceGuard`."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from lowtide.invalidation.guard import RaceGuard, Token

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
