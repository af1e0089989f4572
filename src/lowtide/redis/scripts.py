"""Lua scripts that report the commands they ran, so the ledger stays exact.

A lowtide script returns ``{result, inner}`` where ``inner`` is a flat array of the command
names it called (``{"incrby", "pexpire"}``). The gateway strips ``inner`` off, adds it to the
ledger (the server counts each ``redis.call`` in INFO commandstats, and Upstash bills it), and
hands ``result`` to the caller.

The ``#!lua flags=allow-key-locking`` shebang is added only for Upstash, where it stops a script
from taking the global lock; plain Redis and Valkey reject it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from importlib import resources

__all__ = ["UPSTASH_SHEBANG", "Script"]

UPSTASH_SHEBANG = "#!lua flags=allow-key-locking\n"


@dataclass(frozen=True, slots=True)
class Script:
    """A Lua script in lowtide's reporting convention (see module docs)."""

    name: str
    source: str
    _sha: dict[bool, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_package(cls, name: str) -> Script:
        """Load ``lowtide/redis/lua/<name>.lua``."""
        text = resources.files("lowtide.redis").joinpath("lua", f"{name}.lua").read_text("utf-8")
        return cls(name, text)

    def body(self, *, upstash: bool) -> str:
        """The source to send: with the key-locking shebang only for Upstash."""
        return UPSTASH_SHEBANG + self.source if upstash else self.source

    def sha(self, *, upstash: bool) -> str:
        """SHA1 of :meth:`body`, as EVALSHA needs it."""
        cached = self._sha.get(upstash)
        if cached is None:
            cached = hashlib.sha1(self.body(upstash=upstash).encode("utf-8")).hexdigest()
            self._sha[upstash] = cached
        return cached
