"""Send observers: a hook called after every send of every gateway in the process (metrics,
tracing; see :mod:`lowtide.integrations`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import NamedTuple

from lowtide.context import Attribution
from lowtide.ledger import Ledger

__all__ = ["OBSERVERS", "Sent", "notify", "observe_sends"]

log = logging.getLogger("lowtide")


class Sent(NamedTuple):
    """One send through a gateway, as :func:`observe_sends` callbacks see it."""

    #: the sending hub's ledger (tells hubs apart)
    ledger: Ledger
    attribution: Attribution
    #: server naming (``get``), or the operation (``pipeline``, ``evalsha``, ``mget``, ``scan``)
    command: str
    #: wall-clock start in ns (``time.time_ns()``), after a connection slot was taken
    start_ns: int
    #: the round trip, in seconds
    seconds: float
    #: what the caller got instead of a reply (lowtide's typed error), or None
    error: BaseException | None
    #: sent on a dedicated connection of lowtide's (the cache's writer connection), not
    #: through redis-py's client: instrumentation of redis-py does not see it
    dedicated: bool = False


#: the callbacks (add with :func:`observe_sends`; a gateway checks it is empty before timing)
OBSERVERS: list[Callable[[Sent], None]] = []


def observe_sends(callback: Callable[[Sent], None]) -> Callable[[], None]:
    """Call ``callback(Sent)`` after every send of every gateway in this process (metrics,
    tracing); returns a function that unsubscribes. A failing callback is logged, never raised.
    With no callback the sends pay one list check."""
    OBSERVERS.append(callback)

    def unsubscribe() -> None:
        with contextlib.suppress(ValueError):
            OBSERVERS.remove(callback)

    return unsubscribe


def notify(sent: Sent) -> None:
    """Tell every observer of ``sent`` (a failing one is logged)."""
    for callback in list(OBSERVERS):
        try:
            callback(sent)
        except Exception:
            log.exception("send observer failed")
