"""``@cache.cached()``: cache an async function's results in a tiered cache.

The key is the function's qualified name (or ``name=``) and its arguments, bound to the
signature (``f(1)``, ``f(x=1)`` and ``f()`` with a default of 1 are one key) and encoded
injectively with their types (``1``, ``1.0``, ``True``, ``"1"`` and ``b"1"`` are five keys; a
``str`` holding separators or braces cannot imitate two arguments). Arguments of other types
raise ``TypeError`` at call time naming the parameter, never a silent collision: pass ``key=``
(a function of the same arguments returning a ``str``) or ``exclude=`` (parameter names left
out of the key, e.g. ``("self",)``). Keys over :data:`MAX_KEY_TEXT` characters are replaced by
a SHA-256 digest of the arguments.

Everything else is :meth:`Cache.get_or_load`: single-flight, negative caching of ``None``,
fail-safe, eager refresh; the tenant comes from ``tenant_scope()`` or a ``tenant=`` parameter
name (or function); ``tags=`` (a tuple, or a function of the arguments) needs a
``purgeable=True`` cache. The decorated function keeps its signature for type checkers
(``ParamSpec``) and gains ``key(*args, **kwargs) -> str`` and
``await invalidate(*args, **kwargs)``, typed with the same parameters (:class:`CachedFunction`;
through an instance, a method's ``key`` and ``invalidate`` still take the instance first:
:class:`CachedMethod`).
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import functools
import hashlib
import inspect
import uuid
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Final,
    ParamSpec,
    Protocol,
    Self,
    TypeVar,
    cast,
    overload,
)

from lowtide.errors import ConfigError
from lowtide.keys import escape

if TYPE_CHECKING:
    from lowtide.cache.options import CacheOptions

__all__ = ["MAX_KEY_TEXT", "CachedFunction", "CachedMethod", "Decorating", "encode_arguments"]

P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
S = TypeVar("S")
S_contra = TypeVar("S_contra", contravariant=True)
Fn = Callable[P, Coroutine[Any, Any, R]]

#: longest key kept as text (longer: the function's name and a digest of the arguments)
MAX_KEY_TEXT: Final = 1024
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class _Unkeyable(TypeError):
    pass


def _enc(v: Any, out: list[str]) -> None:
    """Append the injective, typed encoding of ``v`` to ``out`` (see module docs)."""
    if v is None:
        out.append("N")
    elif v is True:
        out.append("T")
    elif v is False:
        out.append("F")
    elif isinstance(v, enum.Enum):
        cls = type(v)
        name = f"{cls.__module__}.{cls.__qualname__}"
        out.append(f"e{len(name)}:{name}")
        _enc(v.value, out)
    elif isinstance(v, str):
        out.append(f"s{len(v)}:{v}")
    elif isinstance(v, int):
        out.append(f"i{int(v)};")
    elif isinstance(v, float):
        out.append(f"f{float(v)!r};")
    elif isinstance(v, bytes | bytearray):
        out.append(f"b{len(v)}:{bytes(v).hex()}")
    elif isinstance(v, dt.datetime):
        out.append(f"D{v.isoformat()};")
    elif isinstance(v, dt.date):
        out.append(f"d{v.isoformat()};")
    elif isinstance(v, dt.time):
        out.append(f"t{v.isoformat()};")
    elif isinstance(v, uuid.UUID):
        out.append(f"u{v};")
    elif isinstance(v, decimal.Decimal):
        out.append(f"m{v};")
    elif isinstance(v, tuple | list):
        out.append("(" if isinstance(v, tuple) else "[")
        for item in v:
            _enc(item, out)
        out.append(")" if isinstance(v, tuple) else "]")
    elif isinstance(v, set | frozenset):
        out.append("<" + "".join(sorted(encode_value(x) for x in v)) + ">")
    elif isinstance(v, dict):
        pairs = sorted((encode_value(k), encode_value(x)) for k, x in v.items())
        out.append("{" + "".join(k + x for k, x in pairs) + "}")
    else:
        raise _Unkeyable(type(v).__name__)


def encode_value(v: Any) -> str:
    """The typed encoding of one value (TypeError for a type that cannot form a key)."""
    out: list[str] = []
    _enc(v, out)
    return "".join(out)


def encode_arguments(values: Sequence[tuple[str, Any]]) -> str:
    """The encoding of ``(parameter name, value)`` pairs (in signature order); a value that
    cannot form a key raises ``TypeError`` naming its parameter."""
    out: list[str] = []
    for name, v in values:
        try:
            _enc(v, out)
        except _Unkeyable as exc:
            raise TypeError(
                f"argument {name!r} of type {exc} cannot form a cache key: pass key=... "
                f"or exclude=({name!r},) to @cached"
            ) from None
    return "".join(out)


class CachedMethod(Protocol[S_contra, P, R_co]):
    """A cached method read through an instance: called without the instance (bound), while
    its ``key`` and ``invalidate`` take the instance first (as through the class)."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]:
        """Call the method (its cached result)."""
        ...

    def key(self, instance: S_contra, /, *args: P.args, **kwargs: P.kwargs) -> str:
        """The cache key of a call with these arguments."""
        ...

    def invalidate(
        self, instance: S_contra, /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, None]:
        """Delete the cached result of a call with these arguments (on every hub)."""
        ...


class CachedFunction(Protocol[P, R_co]):
    """What ``@cache.cached()`` returns: the async function with its signature, plus ``key``
    and ``invalidate`` taking the same arguments."""

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]:
        """Call the function (its cached result)."""
        ...

    def key(self, *args: P.args, **kwargs: P.kwargs) -> str:
        """The cache key of a call with these arguments."""
        ...

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, None]:
        """Delete the cached result of a call with these arguments (on every hub)."""
        ...

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None, /) -> Self: ...

    @overload
    def __get__(
        self: CachedFunction[Concatenate[S, Q], R],
        instance: S,
        owner: type[Any] | None = None,
        /,
    ) -> CachedMethod[S, Q, R]: ...

    def __get__(self, instance: Any, owner: Any = None, /) -> Any:
        """A method read through an instance is bound (as any function)."""
        ...


class _CacheLike(Protocol):
    name: str
    options: CacheOptions

    async def get_or_load(
        self,
        key: str,
        loader: Callable[[], Awaitable[Any]],
        *,
        ttl: float | None = None,
        tenant: str | None = None,
        tags: Sequence[str] = (),
    ) -> Any: ...

    async def delete(self, key: str, *, tenant: str | None = None) -> None: ...


class _Binder:
    """Turns a call's arguments into ``(key, tenant, tags)`` for one decorated function."""

    def __init__(
        self,
        fn: Callable[..., Any],
        prefix: str,
        *,
        key: Callable[..., str] | None,
        tenant: str | Callable[..., str | None] | None,
        tags: Sequence[str] | Callable[..., Sequence[str]],
        exclude: Sequence[str],
    ) -> None:
        self._sig = inspect.signature(fn)
        params = list(self._sig.parameters.values())
        names = {p.name for p in params}
        for n in exclude:
            if n not in names:
                raise ConfigError(f"exclude: {fn.__qualname__} has no parameter {n!r}")
        if isinstance(tenant, str) and tenant not in names:
            raise ConfigError(f"tenant: {fn.__qualname__} has no parameter {tenant!r}")
        if tenant is not None and not isinstance(tenant, str) and not callable(tenant):
            raise ConfigError("tenant: give a parameter name or a function of the arguments")
        if key is not None and not callable(key):
            raise ConfigError("key: give a function of the arguments returning a str")
        self._prefix = prefix
        self._key = key
        self._tenant = tenant
        self._tags = tags
        self._keep = [p.name for p in params if p.name not in exclude]
        self._simple = all(p.kind in _POSITIONAL for p in params) and not exclude
        self._arity = len(params)
        positional = [p.name for p in params if p.kind in _POSITIONAL]
        #: where a positional tenant parameter sits (a fast path; None: bind the call)
        self._tenant_at = positional.index(tenant) if tenant in positional else None

    def _values(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        bound = self._sig.bind(*args, **kwargs)
        bound.apply_defaults()
        return bound.arguments

    def key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        if self._key is not None:
            text = self._key(*args, **kwargs)
            if not isinstance(text, str):
                raise TypeError(f"key= returned {type(text).__name__}, expected str")
            return f"{self._prefix}:{text}"
        if self._simple and not kwargs and len(args) == self._arity:
            encoded = encode_arguments(list(zip(self._keep, args, strict=True)))
        else:
            values = self._values(args, kwargs)
            encoded = encode_arguments([(n, values[n]) for n in self._keep if n in values])
        text = f"{self._prefix}:{encoded}"
        if len(text) > MAX_KEY_TEXT:
            digest = hashlib.sha256(encoded.encode("utf-8", "surrogatepass")).hexdigest()
            text = f"{self._prefix}:#{digest}"
        return text

    def tenant(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        selector = self._tenant
        if selector is None:
            return None
        if callable(selector):
            chosen = selector(*args, **kwargs)
            if chosen is not None and not isinstance(chosen, str):
                raise TypeError(f"tenant= returned {type(chosen).__name__}, expected str or None")
            return chosen
        at = self._tenant_at
        if selector in kwargs:
            value = kwargs[selector]
        elif at is not None and at < len(args):
            value = args[at]
        else:
            value = self._values(args, kwargs).get(selector)
        if value is not None and not isinstance(value, str):
            raise TypeError(f"tenant parameter {selector!r} is {type(value).__name__}, not str")
        return value

    def tags(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Sequence[str]:
        return self._tags(*args, **kwargs) if callable(self._tags) else self._tags


class Decorating:
    """Gives :class:`~lowtide.cache.tiered.Cache` its ``cached`` decorator."""

    @overload
    def cached(self, fn: Fn[P, R], /) -> CachedFunction[P, R]: ...

    @overload
    def cached(
        self,
        fn: None = None,
        /,
        *,
        key: Callable[..., str] | None = None,
        tenant: str | Callable[..., str | None] | None = None,
        ttl: float | None = None,
        tags: Sequence[str] | Callable[..., Sequence[str]] = (),
        exclude: Sequence[str] = (),
        name: str | None = None,
    ) -> Callable[[Fn[P, R]], CachedFunction[P, R]]: ...

    def cached(
        self,
        fn: Any = None,
        /,
        *,
        key: Callable[..., str] | None = None,
        tenant: str | Callable[..., str | None] | None = None,
        ttl: float | None = None,
        tags: Sequence[str] | Callable[..., Sequence[str]] = (),
        exclude: Sequence[str] = (),
        name: str | None = None,
    ) -> Any:
        """Cache an async function's results (see :mod:`lowtide.cache.decorator`)."""
        cache = cast(_CacheLike, self)

        def decorate(func: Fn[P, R]) -> CachedFunction[P, R]:
            return _decorate(cache, func, key, tenant, ttl, tags, exclude, name)

        return decorate if fn is None else decorate(fn)


def _decorate(
    cache: _CacheLike,
    fn: Fn[P, R],
    key: Callable[..., str] | None,
    tenant: str | Callable[..., str | None] | None,
    ttl: float | None,
    tags: Sequence[str] | Callable[..., Sequence[str]],
    exclude: Sequence[str],
    name: str | None,
) -> CachedFunction[P, R]:
    if not inspect.iscoroutinefunction(fn):
        raise TypeError("@cached() decorates async functions (async def)")
    if name is None:
        fn_id = f"{fn.__module__}.{fn.__qualname__}"
    elif isinstance(name, str) and name:
        fn_id = name
    else:
        raise ConfigError("name: give a non-empty str")
    if tenant is not None and not cache.options.per_tenant:
        raise ConfigError(f"cache {cache.name!r} is shared (per_tenant=False): no tenant=")
    if tags and not cache.options.purgeable:
        raise ConfigError(f"tags need a purgeable cache: lt.cache({cache.name!r}, purgeable=True)")
    binder = _Binder(fn, escape(fn_id), key=key, tenant=tenant, tags=tags, exclude=exclude)
    _register(cache, fn_id, inspect.unwrap(fn))

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        k = binder.key(args, kwargs)

        async def load() -> R:
            return await fn(*args, **kwargs)

        got = await cache.get_or_load(
            k, load, ttl=ttl, tenant=binder.tenant(args, kwargs), tags=binder.tags(args, kwargs)
        )
        return cast(R, got)

    async def invalidate(*args: Any, **kwargs: Any) -> None:
        await cache.delete(binder.key(args, kwargs), tenant=binder.tenant(args, kwargs))

    def key_of(*args: Any, **kwargs: Any) -> str:
        return binder.key(args, kwargs)

    setattr(wrapper, "invalidate", invalidate)  # noqa: B010 - documented attributes
    setattr(wrapper, "key", key_of)  # noqa: B010
    return cast(CachedFunction[P, R], wrapper)


def _register(cache: _CacheLike, fn_id: str, fn: Callable[..., Any]) -> None:
    """Refuse a second, different function with the same name on one cache (two closures made
    by one factory would otherwise share keys)."""
    seen: dict[str, weakref.ref[Any]] | None = getattr(cache, "_lt_decorated", None)
    if seen is None:
        seen = {}
        setattr(cache, "_lt_decorated", seen)  # noqa: B010
    held = seen.get(fn_id)
    if held is not None and held() is not None and held() is not fn:
        raise ConfigError(
            f"another function is already cached as {fn_id!r} on cache {cache.name!r} (a "
            "closure made twice?): pass name= to tell them apart"
        )
    seen[fn_id] = weakref.ref(fn)
