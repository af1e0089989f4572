"""The drop-in client: ``lt.redis(cache_prefixes=...)`` returns a ``redis.asyncio.Redis``
whose reads of cached prefixes are answered from process memory (see docs/dropin.md).

* :mod:`~lowtide.dropin.reads`: which commands are cached, their keys, ledger labels (pure);
* :mod:`~lowtide.dropin.replies`: sizes and copies of held replies;
* :mod:`~lowtide.dropin.engine`: L1, race guards, pushes, modes, writes and pipelines;
* :mod:`~lowtide.dropin.client`: builds a client on a hub.

The redis-py classes live in :mod:`lowtide.redis.dropin` (the only package that imports
redis-py).
"""

from lowtide.dropin.client import drop_in
from lowtide.dropin.engine import DropInEngine
from lowtide.redis.dropin import DropInPipeline, DropInRedis, DropInUnavailable

__all__ = ["DropInEngine", "DropInPipeline", "DropInRedis", "DropInUnavailable", "drop_in"]
