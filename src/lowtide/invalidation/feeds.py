"""Which invalidation feed the listener uses, and when ``auto`` moves on to the next one.

``auto`` tries, in order: CLIENT TRACKING (pushes for every writer, no command per write; not on
Upstash, which documents none), keyspace notifications (the server publishes every writer's
changes; lowtide turns on the event classes it needs), and the pub/sub backplane (lowtide's
writers PUBLISH what they changed). It moves on only when the server refuses a feed before it
ever worked in this process: a refused command, or for keyspace notifications a self-test whose
event never came (a server that accepts the setting but does not deliver every class). A feed
that worked once is kept: later failures are outages, answered by reconnecting.
"""

from __future__ import annotations

from lowtide.errors import LowtideError, RedisCommandError

__all__ = ["FeedChain"]

_NAMES = {"tracking": "CLIENT TRACKING", "keyspace": "keyspace notifications"}


class FeedChain:
    """The feeds still to try for one setting, the first one in use."""

    def __init__(self, setting: str, provider: str) -> None:
        self._chain = [setting]
        if setting == "auto":
            upstash = provider == "upstash"
            self._chain = ["keyspace", "pubsub"] if upstash else ["tracking", "keyspace", "pubsub"]
        #: the feed in use passed a self-test in this process
        self.proven = False

    @property
    def current(self) -> str:
        """The feed in use (or being set up): tracking, keyspace, pubsub or ttl."""
        return self._chain[0]

    def fall_back(self, exc: LowtideError, *, selftest: bool = False) -> str | None:
        """Give up the current feed if ``exc`` says the server refuses it (``selftest``: the
        self-test failed) and another is left: returns why, for the log; else None."""
        feed = self.current
        if len(self._chain) < 2 or self.proven:
            return None
        if feed == "tracking":
            refused = isinstance(exc, RedisCommandError) and exc.command == "client|tracking"
            if selftest or not (refused or "tracking" in str(exc).lower()):
                return None
        elif feed != "keyspace":
            return None
        self._chain.pop(0)
        return f"{_NAMES[feed]} unavailable ({exc}); using {self.current}"
