"""Redis access: the only package in lowtide that imports redis-py.

Components never talk to redis-py; they send commands through the hub's :class:`Gateway`.
"""

from lowtide.redis.client import make_client, make_pool, plain_client
from lowtide.redis.connection import HANDSHAKE, CountingConnection
from lowtide.redis.gateway import Gateway
from lowtide.redis.scripts import Script

__all__ = [
    "HANDSHAKE",
    "CountingConnection",
    "Gateway",
    "Script",
    "make_client",
    "make_pool",
    "plain_client",
]
