"""Raw replies held in process memory: how large they are, and private copies of them.

The drop-in client keeps what redis-py's parser returned (before response callbacks, already
decoded when ``decode_responses`` is on) and runs the callbacks again on every answer, as
redis-py's own client-side cache does. A caller may mutate what it gets, so every answer is
made from a copy of the held reply (immutable leaves are shared).
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["copy_reply", "reply_size"]

_LEAF: Final = 16  # bytes charged for an int, float, None or container slot


def reply_size(reply: Any, budget: int) -> int:
    """Approximate bytes of ``reply``; stops counting (returns more than ``budget``) as soon as
    it is larger than ``budget``, so a huge reply costs little to refuse."""
    total = 0
    stack = [reply]
    while stack:
        item = stack.pop()
        if isinstance(item, bytes | str | bytearray):
            total += len(item) + _LEAF
        elif isinstance(item, list | tuple | set | frozenset):
            total += _LEAF
            stack.extend(item)
        elif isinstance(item, dict):
            total += _LEAF
            stack.extend(item.keys())
            stack.extend(item.values())
        else:
            total += _LEAF
        if total > budget:
            return total
    return total


def copy_reply(reply: Any) -> Any:
    """A copy of ``reply`` whose containers are new (leaves are immutable and shared)."""
    if isinstance(reply, list):
        return [copy_reply(x) for x in reply]
    if isinstance(reply, dict):
        return {copy_reply(k): copy_reply(v) for k, v in reply.items()}
    if isinstance(reply, set):
        return {copy_reply(x) for x in reply}
    if isinstance(reply, tuple):
        return tuple(copy_reply(x) for x in reply)
    if isinstance(reply, bytearray):
        return bytearray(reply)
    return reply
