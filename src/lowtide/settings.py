"""Settings: parsed once, validated with clear errors, frozen, and safe to print.

:class:`Settings` holds everything the hub needs. Build it from keyword arguments or from the
environment with :meth:`Settings.from_env`; both paths run the same validation. Passwords in the
URL never appear in ``repr()``, logs or health output (see :func:`redact_url`).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from lowtide._validate import integer, seconds
from lowtide.errors import ConfigError

__all__ = [
    "INVALIDATION_MODES",
    "PROVIDERS",
    "URL_SCHEMES",
    "InvalidationSetting",
    "Provider",
    "Settings",
    "parse_bool",
    "redact_url",
    "validate_url",
]

Provider = Literal["redis", "valkey", "dragonfly", "keydb", "upstash"]
InvalidationSetting = Literal["auto", "tracking", "keyspace", "pubsub", "ttl"]
#: ``auto``: CLIENT TRACKING, else keyspace notifications, else pub/sub (on Upstash: keyspace
#: notifications, else pub/sub; see :mod:`lowtide.invalidation.feeds`);
#: ``keyspace``: the server's keyspace notifications (lowtide turns on the event classes it
#: needs in ``notify-keyspace-events``, never removing one);
#: ``ttl``: no push at all, L1 entries live at most ``max_staleness``
INVALIDATION_MODES: tuple[str, ...] = ("auto", "tracking", "keyspace", "pubsub", "ttl")
#: servers lowtide knows; ``upstash`` selects per-command billing rules and no CLIENT TRACKING
PROVIDERS: tuple[str, ...] = ("redis", "valkey", "dragonfly", "keydb", "upstash")

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}
#: URL schemes :func:`validate_url` accepts (``valkey://`` and ``valkeys://`` are spellings of
#: ``redis://`` and ``rediss://``)
URL_SCHEMES: tuple[str, ...] = ("redis", "rediss", "valkey", "valkeys", "unix")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


def parse_bool(value: str | bool, *, name: str = "switch") -> bool:
    """Parse a switch: ``true/1/yes/on`` and ``false/0/no/off`` (any case) are accepted."""
    if isinstance(value, bool):
        return value
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ConfigError(f"{name}: expected true/false, 1/0, yes/no or on/off, got {value!r}")


#: query options whose value is a secret (``?password=``, ``ssl_keyfile_password=``, tokens)
_SECRET_OPTION = re.compile(
    r"(?i)(^|[?&;])([^=&;#]*(?:pass|pwd|secret|token|auth|credential)[^=&;#]*)=([^&;#]*)"
)


def redact_url(url: object) -> str | None:
    """Return ``url`` with every secret replaced by ``***``, whatever the URL's form.

    Masked: the password of ``user:password@`` (and the whole userinfo of ``secret@``, which
    redis-py reads as a password), found at the *last* ``@`` so a password containing ``/``,
    ``?``, ``#`` or ``@`` is masked whole even when the URL cannot be parsed; and the value of
    any query option that names a secret (``?password=``, ``ssl_keyfile_password=``...).
    When in doubt more is masked, never less. User names, hosts, ports and paths are kept.
    """
    if url is None:
        return None
    if not isinstance(url, str):
        return "<not a url>"
    text = url
    scheme, sep, rest = text.partition("://")
    if not sep:
        return "***"  # not a URL at all: it may be a password pasted into the wrong variable
    if sep:
        at = rest.rfind("@")
        if at >= 0:
            userinfo, hostpart = rest[:at], rest[at + 1 :]
            if ":" in userinfo:
                user = userinfo.split(":", 1)[0]
                masked = f"{user}:***" if user and "/" not in user else ":***"
            else:
                masked = "***"  # redis://secret@host: a password alone
            text = f"{scheme}://{masked}@{hostpart}"
    return _SECRET_OPTION.sub(lambda m: f"{m.group(1)}{m.group(2)}=***", text)


def validate_url(url: str) -> str:
    """Check that ``url`` is a Redis URL lowtide can use; return it normalised for redis-py.

    ``valkey://`` and ``valkeys://`` are accepted as spellings of ``redis://`` and ``rediss://``.
    Raises :class:`ConfigError` (with the password masked) when it is not.
    """
    if not isinstance(url, str) or not url.strip():
        raise ConfigError("url: expected a redis:// URL, got an empty value")
    shown = redact_url(url)
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        if "@" not in url:  # no user info: the parser's message (a bad port...) is safe
            raise ConfigError(f"url: cannot parse {shown!r}: {exc}") from None
        try:
            netloc = urlsplit(url.strip()).netloc
        except ValueError:
            netloc = ""
        if "@" in netloc:  # the user info parsed whole: the port after it is what failed
            raise ConfigError(f"url: port must be a number from 1 to 65535 in {shown!r}") from None
        # the parser's own message may quote part of a password: never show it
        raise ConfigError(
            f"url: cannot parse {shown!r} (a password with / ? # or @ must be "
            "percent-encoded, e.g. %2F %3F %23 %40)"
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in URL_SCHEMES:
        schemes = [f"{s}://" for s in URL_SCHEMES]
        raise ConfigError(
            f"url: unsupported scheme {parts.scheme!r} in {shown!r}; "
            f"use {', '.join(schemes[:-1])} or {schemes[-1]}"
        )
    if scheme == "unix":
        if not parts.path:
            raise ConfigError(f"url: {shown!r} has no socket path")
    else:
        if not parts.hostname:
            raise ConfigError(f"url: {shown!r} has no host")
        if port is not None and not 0 < port < 65536:
            raise ConfigError(f"url: port out of range in {shown!r}")
        db = parts.path.lstrip("/")
        if db and not db.isdigit():
            raise ConfigError(f"url: database must be a number in {shown!r}, got {unquote(db)!r}")
    if scheme in ("valkey", "valkeys"):
        url = "redis" + url.strip()[len("valkey") :]
    return url.strip()


def _default_instance() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the hub is configured with. Frozen; build a changed copy with :meth:`with_`.

    Durations are in seconds.
    """

    #: Redis URL, or ``None`` to run local-only (no server at all)
    url: str | None = None
    #: first segment of every key lowtide writes; lets several apps share a database
    namespace: str = "lt"
    #: this process's name in the ledger, health and the fleet view
    instance: str = field(default_factory=_default_instance)
    #: server kind; ``upstash`` switches billing rules, and ``auto`` invalidation to keyspace
    #: notifications (Upstash documents no CLIENT TRACKING)
    provider: Provider = "redis"
    #: start suspended: never open a connection (SUSPEND_REDIS, the incident team's switch)
    suspend: bool = False
    #: write a ``Redis Metrics`` log line every ``metrics_interval`` (TRACK_REDIS_METRICS)
    track_metrics: bool = False
    metrics_interval: float = 60.0
    #: read regions of an Upstash Global database: each write is billed 1 + read_regions times
    read_regions: int = 0
    #: default L2 TTL of caches
    default_ttl: float = 300.0
    #: upper bound on how old an L1 value may be when read
    max_staleness: float = 60.0
    #: seconds a round trip may take once it has a connection (a batch gets 0.25 ms more per
    #: command or key it carries, and per KB of a large argument)
    op_timeout: float = 1.0
    #: timeout of opening a connection
    connect_timeout: float = 1.0
    #: first and largest delay between reconnection attempts (jittered; never below 1 s)
    reconnect_min: float = 1.0
    reconnect_max: float = 4.0
    #: connections the data pool may open
    max_connections: int = 32
    #: how process memory learns about writes (see :data:`INVALIDATION_MODES`)
    invalidation: InvalidationSetting = "auto"
    #: largest encoded value a cache accepts (bytes)
    max_value_bytes: int = 1_048_576
    #: publish a ledger snapshot once a minute for ``lowtide top`` (1 SET per minute)
    fleet_view: bool = False
    #: obey the fleet-wide kill switch (``lowtide suspend``/``resume``); needs the listener
    fleet_switch: bool = True
    #: the listener speaks RESP3 (push frames on its own connection) instead of RESP2 pub/sub
    listener_resp3: bool = False
    #: with CLIENT TRACKING on one server known to support it, cache writes go over a
    #: connection registered with NOLOOP, so the writer does not read its own write back
    noloop_writes: bool = True
    #: longest ``start()`` waits for the invalidation listener to be subscribed and
    #: self-tested (0: do not wait; ``Lowtide.ready()`` waits on demand)
    start_wait: float = 2.0

    def __post_init__(self) -> None:
        if self.url is not None:
            object.__setattr__(self, "url", validate_url(self.url))
        if not isinstance(self.namespace, str) or not _NAME_RE.match(self.namespace):
            raise ConfigError(
                f"namespace: 1-64 characters of letters, digits, '_', '-' or '.', "
                f"got {self.namespace!r}"
            )
        if not isinstance(self.instance, str) or not self.instance or len(self.instance) > 200:
            raise ConfigError(f"instance: expected a non-empty name, got {self.instance!r}")
        if self.provider not in PROVIDERS:
            raise ConfigError(
                f"provider: unknown provider {self.provider!r}; expected one of "
                + ", ".join(PROVIDERS)
            )
        for name in (
            "suspend",
            "track_metrics",
            "fleet_view",
            "fleet_switch",
            "listener_resp3",
            "noloop_writes",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name}: expected a bool, got {getattr(self, name)!r}")
        for name in (
            "default_ttl",
            "max_staleness",
            "reconnect_min",
            "reconnect_max",
            "start_wait",
        ):
            seconds(name, getattr(self, name), allow_zero=True)
        seconds("metrics_interval", self.metrics_interval, minimum=1.0)
        for name in ("op_timeout", "connect_timeout"):
            seconds(name, getattr(self, name), minimum=0.001)
        if self.reconnect_max < self.reconnect_min:
            raise ConfigError("reconnect_max: must be >= reconnect_min")
        if self.invalidation not in INVALIDATION_MODES:
            raise ConfigError(
                f"invalidation: expected one of {', '.join(INVALIDATION_MODES)}, "
                f"got {self.invalidation!r}"
            )
        integer("read_regions", self.read_regions, minimum=0)
        integer("max_connections", self.max_connections)
        integer("max_value_bytes", self.max_value_bytes)

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={redact_url(self.url)!r}"
            if f.name == "url"
            else f"{f.name}={getattr(self, f.name)!r}"
            for f in fields(self)
        )
        return f"Settings({shown})"

    @property
    def redacted_url(self) -> str | None:
        """The URL with its password masked."""
        return redact_url(self.url)

    def with_(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read settings from environment variables (``os.environ`` unless ``env`` is given).

        ========================  ==============================  ===============
        setting                   variable (first one wins)        example
        ========================  ==============================  ===============
        url                       LOWTIDE_REDIS_URL, REDIS_URL     redis://h:6379/0
        suspend                   LOWTIDE_SUSPEND, SUSPEND_REDIS   true
        track_metrics             LOWTIDE_TRACK_METRICS,
                                  TRACK_REDIS_METRICS              1
        namespace                 LOWTIDE_NAMESPACE                lt
        instance                  LOWTIDE_INSTANCE                 web-1
        provider                  LOWTIDE_PROVIDER                 upstash
        read_regions              LOWTIDE_READ_REGIONS             1
        default_ttl               LOWTIDE_DEFAULT_TTL              300
        max_staleness             LOWTIDE_MAX_STALENESS            60
        op_timeout                LOWTIDE_OP_TIMEOUT               1.0
        connect_timeout           LOWTIDE_CONNECT_TIMEOUT          1.0
        metrics_interval          LOWTIDE_METRICS_INTERVAL         60
        invalidation              LOWTIDE_INVALIDATION             auto
        max_value_bytes           LOWTIDE_MAX_VALUE_BYTES          1048576
        fleet_view                LOWTIDE_FLEET_VIEW               true
        fleet_switch              LOWTIDE_FLEET_SWITCH             false
        listener_resp3            LOWTIDE_LISTENER_RESP3           true
        noloop_writes             LOWTIDE_NOLOOP_WRITES            false
        start_wait                LOWTIDE_START_WAIT               2.0
        ========================  ==============================  ===============

        Keyword ``overrides`` win over the environment.
        """
        source = os.environ if env is None else env

        def pick(*names: str) -> tuple[str, str] | None:
            for n in names:
                if n in source and source[n].strip() != "":
                    return n, source[n]
            return None

        values: dict[str, Any] = {}
        sources: dict[str, str] = {}  # setting -> the variable that supplied it
        hit = pick("LOWTIDE_REDIS_URL", "REDIS_URL")
        if hit:
            values["url"] = hit[1].strip()
            sources["url"] = hit[0]
        for key, names in (
            ("suspend", ("LOWTIDE_SUSPEND", "SUSPEND_REDIS")),
            ("track_metrics", ("LOWTIDE_TRACK_METRICS", "TRACK_REDIS_METRICS")),
            ("fleet_view", ("LOWTIDE_FLEET_VIEW",)),
            ("fleet_switch", ("LOWTIDE_FLEET_SWITCH",)),
            ("listener_resp3", ("LOWTIDE_LISTENER_RESP3",)),
            ("noloop_writes", ("LOWTIDE_NOLOOP_WRITES",)),
        ):
            hit = pick(*names)
            if hit:
                values[key] = parse_bool(hit[1], name=hit[0])
                sources[key] = hit[0]
        for key, var in (
            ("namespace", "LOWTIDE_NAMESPACE"),
            ("instance", "LOWTIDE_INSTANCE"),
            ("provider", "LOWTIDE_PROVIDER"),
            ("invalidation", "LOWTIDE_INVALIDATION"),
        ):
            hit = pick(var)
            if hit:
                lower = key in ("provider", "invalidation")
                values[key] = hit[1].strip().lower() if lower else hit[1].strip()
                sources[key] = hit[0]
        for key, var, kind in (
            ("read_regions", "LOWTIDE_READ_REGIONS", int),
            ("max_value_bytes", "LOWTIDE_MAX_VALUE_BYTES", int),
            ("default_ttl", "LOWTIDE_DEFAULT_TTL", float),
            ("max_staleness", "LOWTIDE_MAX_STALENESS", float),
            ("op_timeout", "LOWTIDE_OP_TIMEOUT", float),
            ("connect_timeout", "LOWTIDE_CONNECT_TIMEOUT", float),
            ("metrics_interval", "LOWTIDE_METRICS_INTERVAL", float),
            ("start_wait", "LOWTIDE_START_WAIT", float),
        ):
            hit = pick(var)
            if hit:
                try:
                    values[key] = kind(hit[1].strip())
                    sources[key] = hit[0]
                except ValueError:
                    raise ConfigError(
                        f"{var}: expected {'an integer' if kind is int else 'a number'}, "
                        f"got {hit[1]!r}"
                    ) from None
        values.update(overrides)
        for key in overrides:
            sources.pop(key, None)
        try:
            return cls(**values)
        except ConfigError as exc:
            # name the variable the operator has to fix, not only the setting it fed
            setting = str(exc).split(":", 1)[0]
            if setting in sources:
                raise ConfigError(f"{sources[setting]}: {exc}") from None
            raise
