"""Build redis-py asyncio clients whose connections count every command for the ledger."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import ConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from lowtide.ledger import Ledger
from lowtide.redis.connection import CountingConnection, counting_class_for
from lowtide.settings import Settings

__all__ = ["make_client", "make_pool", "plain_client"]


def make_pool(
    settings: Settings,
    ledger: Ledger | None,
    *,
    max_connections: int | None = None,
    socket_timeout: float | None = None,
    socket_connect_timeout: float | None = None,
    protocol: int = 2,
) -> ConnectionPool:
    """A connection pool for ``settings.url`` that counts into ``ledger``.

    Connections speak RESP2, send no CLIENT SETINFO/SETNAME, no health-check PINGs, and do not
    retry on their own: the hub decides when to try again.
    """
    if settings.url is None:
        raise ValueError("make_pool() needs a URL; the hub runs local-only without one")
    kwargs: dict[str, Any] = dict(parse_url(settings.url))
    connection_class = counting_class_for(kwargs.pop("connection_class", CountingConnection))
    kwargs.update(
        connection_class=connection_class,
        lowtide_ledger=ledger,
        protocol=protocol,
        driver_info=None,
        client_name=None,
        health_check_interval=0,
        socket_timeout=settings.op_timeout if socket_timeout is None else socket_timeout,
        socket_connect_timeout=(
            settings.connect_timeout if socket_connect_timeout is None else socket_connect_timeout
        ),
        retry=Retry(NoBackoff(), 0),
        max_connections=max_connections or settings.max_connections,
    )
    return ConnectionPool(**kwargs)


def make_client(settings: Settings, ledger: Ledger | None, **pool_kwargs: Any) -> Redis:
    """A redis-py asyncio client on a counting pool (see :func:`make_pool`)."""
    pool = make_pool(settings, ledger, **pool_kwargs)
    return Redis(connection_pool=pool)


def plain_client(url: str, *, cluster: bool = False) -> Any:
    """A plain redis-py asyncio client (no counting, RESP2, no CLIENT SETINFO).

    For code that must behave like an ordinary application, such as the demo's baselines;
    ``cluster=True`` gives a plain ``RedisCluster``.
    """
    if cluster:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(url, protocol=2, driver_info=None)
    return Redis.from_url(url, protocol=2, driver_info=None, health_check_interval=0)
