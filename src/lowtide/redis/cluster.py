"""Redis Cluster: a redis-py asyncio RedisCluster whose connections count for the ledger.

redis-py builds cluster connections itself (one pool per node), so the counting connection class
and the ledger are put into the node manager's connection arguments before the client first
connects. Like standalone clients: RESP2, no CLIENT SETINFO, no health-check PINGs, no retries of
its own (the hub decides).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot

from lowtide.ledger import Ledger
from lowtide.redis.connection import counting_class_for
from lowtide.settings import Settings

__all__ = ["key_on_node", "make_cluster_client", "node_url", "primaries"]


def make_cluster_client(
    settings: Settings, ledger: Ledger | None, *, backstop: float | None = None
) -> RedisCluster:
    """A RedisCluster that discovers the cluster from ``settings.url`` and counts commands.

    ``backstop`` replaces the socket timeouts (for a gateway that bounds each command itself).
    """
    if settings.url is None:
        raise ValueError("make_cluster_client() needs a URL")
    parsed: dict[str, Any] = dict(parse_url(settings.url))
    ssl = "SSL" in parsed.pop("connection_class", Connection).__name__
    parsed.pop("db", None)  # clusters have database 0 only
    client = RedisCluster(
        host=parsed.pop("host"),
        port=parsed.pop("port", 6379),
        username=parsed.pop("username", None),
        password=parsed.pop("password", None),
        ssl=ssl,
        protocol=2,
        driver_info=None,
        health_check_interval=0,
        socket_timeout=settings.op_timeout if backstop is None else backstop,
        socket_connect_timeout=settings.connect_timeout if backstop is None else backstop,
        retry=Retry(NoBackoff(), 0),
        max_connections=settings.max_connections,
        **{k: v for k, v in parsed.items() if k.startswith("ssl_")},
    )
    manager = client.nodes_manager
    kwargs = manager.connection_kwargs
    kwargs["connection_class"] = counting_class_for(kwargs.get("connection_class", Connection))
    kwargs["lowtide_ledger"] = ledger
    for node in manager.startup_nodes.values():
        node.connection_class = kwargs["connection_class"]
        node.connection_kwargs["lowtide_ledger"] = ledger
    return client


def primaries(client: RedisCluster) -> list[tuple[str, int]]:
    """``(host, port)`` of every primary the client currently knows, sorted."""
    return sorted((n.host, int(n.port)) for n in client.get_primaries())


def key_on_node(client: RedisCluster, make: Callable[[int], str], host: str, port: int) -> str:
    """The first of ``make(0), make(1), ...`` whose slot the primary ``host:port`` owns."""
    slots = client.nodes_manager.slots_cache
    for i in range(100_000):
        key = make(i)
        owners = slots.get(key_slot(key.encode()))
        if owners and owners[0].host == host and int(owners[0].port) == port:
            return key
    raise LookupError(f"no key found for node {host}:{port}")


def node_url(url: str, host: str, port: int) -> str:
    """``url`` pointed at another node (same scheme, credentials and query)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@{host}:{port}" if userinfo else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, "/0", parts.query, parts.fragment))
