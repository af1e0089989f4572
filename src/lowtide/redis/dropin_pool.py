"""The drop-in client's connection pool: redis-py's own reading of the user's options, on
connections that label and count every command for the ledger.

Options are interpreted by redis-py itself (a throwaway ``Redis.from_url(hub url, **options)``
builds the connection settings, which are then used for a pool of labelling connections), so
``decode_responses``, ``encoding``, ``socket_timeout``, ``retry``, ``client_name``, ``protocol``
and the rest keep their redis-py meaning. lowtide changes two defaults, each only when the
option is not given: ``protocol=2`` (redis-py 8 defaults to RESP3, whose HELLO is one more
command per connection) and no ``CLIENT SETINFO`` (two more). Options that would point the
client at another server or database (``host``, ``port``, ``db``, credentials, ``path``,
``connection_pool``, ...) are refused: the drop-in must talk to the server the hub's
invalidation listener watches.

Every command is labelled where it is packed (:class:`LabellingConnection`): a command sent
outside any lowtide component gets the label ``label(args)`` computes (component, masked key
family, tenant of ``tenant_scope()``); the handshake keeps the ``connection`` label.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    ConnectionPool,
    SSLConnection,
    UnixDomainSocketConnection,
)

from lowtide.context import UNATTRIBUTED, Attribution, _attribution
from lowtide.errors import ConfigError
from lowtide.ledger import Ledger
from lowtide.redis.client import _MAINT_OFF
from lowtide.redis.connection import _CountingMixin

__all__ = ["REFUSED_OPTIONS", "LabellingConnection", "make_dropin_pool"]

Label = Callable[[tuple[Any, ...]], Attribution]

#: options that would change which server or database the client talks to
REFUSED_OPTIONS = frozenset(
    {
        "url",
        "host",
        "port",
        "db",
        "path",
        "unix_socket_path",
        "username",
        "password",
        "credential_provider",
        "connection_pool",
        "connection_class",
        "ssl",
        "auto_close_connection_pool",
        "redis_connect_func",
    }
)
#: stands in for the hub's URL when it has none (local mode: the client never sends)
_NO_SERVER = "redis://localhost:6379/0"


class _LabelMixin(_CountingMixin):
    _lt_label: Label | None

    def __init__(self, *args: Any, lowtide_label: Label | None = None, **kwargs: Any) -> None:
        self._lt_label = lowtide_label
        super().__init__(*args, **kwargs)

    def pack_command(self, *args: Any) -> list[bytes]:
        label = self._lt_label
        if label is None or _attribution.get() is not UNATTRIBUTED:
            return super().pack_command(*args)
        token = _attribution.set(label(args))
        try:
            return super().pack_command(*args)
        finally:
            _attribution.reset(token)


class LabellingConnection(_LabelMixin, Connection):
    """TCP connection that labels and counts what it sends."""


class LabellingSSLConnection(_LabelMixin, SSLConnection):
    """TLS connection that labels and counts what it sends."""


class LabellingUnixConnection(_LabelMixin, UnixDomainSocketConnection):
    """Unix-socket connection that labels and counts what it sends."""


def _labelling_class_for(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    if issubclass(connection_class, SSLConnection):
        return LabellingSSLConnection
    if issubclass(connection_class, UnixDomainSocketConnection):
        return LabellingUnixConnection
    return LabellingConnection


def make_dropin_pool(
    url: str | None, ledger: Ledger, label: Label, options: Mapping[str, Any]
) -> ConnectionPool:
    """A pool for the drop-in client: ``options`` read by redis-py (see module docs) on
    labelling, counting connections to ``url``."""
    opts = dict(options)
    refused = sorted(k for k in opts if k in REFUSED_OPTIONS)
    if refused:
        raise ConfigError(
            f"lt.redis(): {', '.join(refused)} cannot be set: the client talks to the hub's "
            "server and database (set them in the hub's URL)"
        )
    opts.setdefault("protocol", 2)
    if not {"driver_info", "lib_name", "lib_version"} & opts.keys():
        opts["driver_info"] = None
    if _MAINT_OFF is not None and opts.get("maint_notifications_config") is None:
        # redis-py 8 would send CLIENT MAINT_NOTIFICATIONS on every RESP3 connection
        opts["maint_notifications_config"] = _MAINT_OFF
    maint = opts.pop("maint_notifications_config", None)
    probe_opts = dict(opts)
    if maint is not None:
        probe_opts["maint_notifications_config"] = maint
    try:
        probe = Redis.from_url(url or _NO_SERVER, **probe_opts)
    except TypeError as exc:
        raise ConfigError(f"lt.redis(): {exc}") from None
    base = probe.connection_pool
    kwargs = dict(base.connection_kwargs)
    kwargs.pop("himport_registry", None)  # the new pool makes its own
    extra: dict[str, Any] = {}
    if maint is not None:
        extra["maint_notifications_config"] = maint
    return ConnectionPool(
        connection_class=_labelling_class_for(base.connection_class),
        max_connections=base.max_connections,
        lowtide_ledger=ledger,
        lowtide_label=label,
        **extra,
        **kwargs,
    )
