"""Build redis-py asyncio clients whose connections count every command for the ledger."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection, Connection, ConnectionPool, parse_url
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from lowtide.context import Attribution, _attribution
from lowtide.errors import ConfigError
from lowtide.ledger import Ledger
from lowtide.redis.connection import CountingConnection, counting_class_for
from lowtide.settings import Settings, redact_url

__all__ = ["check_url", "make_client", "make_pool", "plain_client"]

#: options lowtide sets itself on every connection (a URL may not set them)
_OURS = {"connection_class", "lowtide_ledger", "protocol", "driver_info", "retry"}


def check_url(settings: Settings) -> None:
    """Raise :class:`ConfigError` (naming ``url``, secrets masked) when redis-py could not
    build a connection from ``settings.url``: an unknown query option, a malformed value.

    Run when a hub is built, so :meth:`Lowtide.start` never meets it (it never raises for
    connection problems, but a URL that cannot work is a configuration error).
    """
    if settings.url is None:
        return
    shown = settings.redacted_url
    try:
        kwargs: dict[str, Any] = dict(parse_url(settings.url))
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"url: {shown!r}: {redact_url(str(exc))}") from None
    cls = kwargs.pop("connection_class", Connection)
    accepted: set[str] = set()
    for klass in getattr(cls, "__mro__", ()):
        init = klass.__dict__.get("__init__")
        if init is not None:
            accepted.update(inspect.signature(init).parameters)
    unknown = sorted(k for k in kwargs if k not in accepted or k in _OURS)
    if unknown:
        raise ConfigError(f"url: unknown option(s) {', '.join(unknown)} in {shown!r}")


def _maint_notifications_off() -> Any:
    """``MaintNotificationsConfig(enabled=False)`` where redis-py has it (8.x), else None."""
    if "maint_notifications_config" not in inspect.signature(ConnectionPool.__init__).parameters:
        return None
    try:
        from redis.maint_notifications import MaintNotificationsConfig
    except ImportError:  # pragma: no cover - redis-py without the feature
        return None
    return MaintNotificationsConfig(enabled=False)


_MAINT_OFF = _maint_notifications_off()


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
    if protocol == 3 and _MAINT_OFF is not None:
        # redis-py 8 would send CLIENT MAINT_NOTIFICATIONS in the RESP3 handshake: one more
        # command per connection (refused by servers without it), and not lowtide's to send
        kwargs["maint_notifications_config"] = _MAINT_OFF
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


async def round_trip(conn: AbstractConnection, attribution: Attribution, *args: Any) -> Any:
    """Send one command on a dedicated connection nobody else reads (a listener's or writer's
    set-up) and read its reply (5 s at most), labelled ``attribution`` for the ledger; an error
    reply is returned, not raised."""
    token = _attribution.set(attribution)
    try:
        await conn.send_command(*args)
        return await conn.read_response(timeout=5.0)
    finally:
        _attribution.reset(token)


async def close_quietly(conn: AbstractConnection | None, pool: ConnectionPool) -> None:
    """Close a dedicated connection and its pool: never fails, never waits more than ~2 s."""
    if conn is not None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.disconnect(nowait=True), 1.0)
    with contextlib.suppress(Exception):
        await asyncio.wait_for(pool.disconnect(), 1.0)
