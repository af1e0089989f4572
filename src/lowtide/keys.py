"""The key builder: one injective map from (namespace, component, name, tenant, key) to a Redis key.

Layout::

    <ns>:<component>:<name>:<tenant>:<key>          plain
    <ns>:<component>:{<name>:<tenant>}:<key>        hash-tagged (scripts touching several keys)

Every segment is escaped so that it never contains ``:``, ``{``, ``}``, ``%``, whitespace or
control characters (percent-encoding of exactly those bytes). Segments therefore split back
unambiguously (:func:`parse_key` inverts :func:`build_key`), which is what makes the map
injective whatever bytes tenant ids and keys contain: a value written for one tenant can never
be read through another tenant's key. Because braces are always escaped inside segments, the
only hash tag in a key is the one lowtide puts there, so on Redis Cluster all keys of one
(component, name, tenant) land in one slot when ``hashtag=True``.

``<tenant>`` is empty for data that belongs to no tenant; tenant ids themselves must be
non-empty. Component codes are single letters so tracking prefixes stay short
(``lt:c:`` = every cache key).
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

from lowtide.errors import InvalidKeyError

__all__ = [
    "COMPONENTS",
    "MAX_KEY_LENGTH",
    "MAX_TENANT_LENGTH",
    "TRACKED",
    "ParsedKey",
    "build_key",
    "check_tenant_id",
    "escape",
    "family",
    "parse_key",
    "prefix",
    "unescape",
]

#: component name -> code used in keys
COMPONENTS: Final[dict[str, str]] = {
    "cache": "c",
    "tenants": "t",
    "breaker": "b",
    "control": "x",
    "limiter": "r",
    "quota": "q",
    "fleet": "m",
    "test": "z",
}
_CODES: Final[dict[str, str]] = {v: k for k, v in COMPONENTS.items()}

#: components whose keys the invalidation listener tracks (``CLIENT TRACKING ... PREFIX``).
#:
#: The placement rule: a value goes under a tracked component when process memory may keep a
#: copy of it, i.e. it is read far more often than it changes and every change must reach every
#: hub (cache values, tenant mappings, breaker open states, limiter penalties and the kill
#: switch, which live under ``control``), or when every change is news every hub can use:
#: limiter window counters (``limiter``), each change one reservation, which tells every hub
#: when a window is spent (:mod:`lowtide.limiter.pushes`). A value that changes on (almost)
#: every call and tells nobody anything goes under an untracked component, because tracking it
#: would push one invalidation per write to every hub for nothing: quota counters (``quota``),
#: and fleet heartbeats, breaker probe leases and trip votes, fleet-view snapshots (``fleet``).
TRACKED: Final[tuple[str, ...]] = ("cache", "tenants", "breaker", "control", "limiter")

#: longest tenant id accepted (characters, before escaping)
MAX_TENANT_LENGTH: Final = 256
#: longest cache name or user key accepted (characters, before escaping)
MAX_KEY_LENGTH: Final = 4096

_SPECIAL = re.compile(r"[%:{}\s\x00-\x1f\x7f]")
_ESCAPED_B = re.compile(rb"%([0-9A-F]{2})")


def _quote(match: re.Match[str]) -> str:
    return "".join(f"%{b:02X}" for b in match.group(0).encode("utf-8"))


def escape(segment: str) -> str:
    """Percent-encode the characters that may not appear inside a key segment."""
    if not _SPECIAL.search(segment):
        return segment
    return _SPECIAL.sub(_quote, segment)


def unescape(segment: str) -> str:
    """Invert :func:`escape` (works on UTF-8 bytes, so multi-byte escapes round-trip)."""
    if "%" not in segment:
        return segment
    raw = _ESCAPED_B.sub(lambda m: bytes([int(m.group(1), 16)]), segment.encode("utf-8"))
    return raw.decode("utf-8")


def _check_text(value: object, what: str, limit: int, *, allow_empty: bool) -> str:
    if not isinstance(value, str):
        raise InvalidKeyError(f"{what} must be a str, got {type(value).__name__}")
    if not value and not allow_empty:
        raise InvalidKeyError(f"{what} must not be empty")
    if len(value) > limit:
        raise InvalidKeyError(f"{what} is {len(value)} characters long; the limit is {limit}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidKeyError(f"{what} is not valid unicode (lone surrogate)") from None
    return value


def check_tenant_id(value: object) -> str:
    """``value`` if :func:`build_key` accepts it as a tenant id: a non-empty str of at most
    :data:`MAX_TENANT_LENGTH` characters that is valid unicode; else :class:`InvalidKeyError`.

    For tenant ids read back from Redis (untrusted) as much as for those written.
    """
    return _check_text(value, "tenant id", MAX_TENANT_LENGTH, allow_empty=False)


def build_key(
    namespace: str,
    component: str,
    name: str,
    tenant: str | None,
    key: str,
    *,
    hashtag: bool = False,
) -> str:
    """Build the Redis key for ``key`` of ``tenant`` in component ``component``'s ``name``.

    >>> build_key("lt", "cache", "profiles", "t1", "user:42")
    'lt:c:profiles:t1:user%3A42'
    >>> build_key("lt", "limiter", "hubspot", "t{1}", "w", hashtag=True)
    'lt:r:{hubspot:t%7B1%7D}:w'

    Raises :class:`InvalidKeyError` for an unknown component, an empty or over-long tenant id,
    name or key, or text that is not valid unicode.
    """
    code = COMPONENTS.get(component)
    if code is None:
        raise InvalidKeyError(f"unknown component {component!r}")
    _check_text(namespace, "namespace", 64, allow_empty=False)
    _check_text(name, "name", MAX_KEY_LENGTH, allow_empty=False)
    if tenant is not None:
        check_tenant_id(tenant)
    _check_text(key, "key", MAX_KEY_LENGTH, allow_empty=True)
    t = "" if tenant is None else escape(tenant)
    if hashtag:
        return f"{escape(namespace)}:{code}:{{{escape(name)}:{t}}}:{escape(key)}"
    return f"{escape(namespace)}:{code}:{escape(name)}:{t}:{escape(key)}"


class ParsedKey(NamedTuple):
    """The parts of a key made by :func:`build_key`."""

    namespace: str
    component: str
    name: str
    tenant: str | None
    key: str
    hashtag: bool


def parse_key(redis_key: str) -> ParsedKey:
    """Split a key made by :func:`build_key` back into its parts (raises InvalidKeyError)."""
    parts = redis_key.split(":")
    hashtag = False
    if len(parts) == 5 and parts[2].startswith("{") and parts[3].endswith("}"):
        hashtag = True
        parts[2], parts[3] = parts[2][1:], parts[3][:-1]
    if len(parts) != 5 or parts[1] not in _CODES:
        raise InvalidKeyError(f"not a lowtide key: {redis_key[:200]!r}")
    ns, code, name, tenant, key = parts
    if any(c in p for p in parts for c in "{}"):
        raise InvalidKeyError(f"not a lowtide key: {redis_key[:200]!r}")
    return ParsedKey(
        unescape(ns),
        _CODES[code],
        unescape(name),
        None if tenant == "" else unescape(tenant),
        unescape(key),
        hashtag,
    )


def prefix(namespace: str, component: str) -> str:
    """The prefix shared by every key of ``component`` (what CLIENT TRACKING BCAST watches)."""
    code = COMPONENTS.get(component)
    if code is None:
        raise InvalidKeyError(f"unknown component {component!r}")
    return f"{escape(namespace)}:{code}:"


def family(namespace: str, component: str, name: str) -> str:
    """The key family label of ``name`` in ``component``: ``<ns>:<code>:<name>:*``.

    Tenant ids and user keys are never part of a family, so families are safe metric labels.
    """
    return f"{prefix(namespace, component)}{escape(name)}:*"
