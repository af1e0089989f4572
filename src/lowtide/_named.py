"""One object per name: what the hub's factories return when asked for a name twice.

``Named.get_or_create`` returns the object made the first time; asking again with other
arguments is a :class:`~lowtide.errors.ConfigError` naming each difference (defaults count, so
``limit=10`` and leaving out a default of 10 are the same).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from lowtide.errors import ConfigError

__all__ = ["Named"]

T = TypeVar("T")


def _arguments(cls: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
    """Every argument of ``cls(hub, *args, **kwargs)`` by name, defaults included."""
    bound = inspect.signature(cls).bind(None, *args, **kwargs)
    bound.apply_defaults()
    out = dict(bound.arguments)
    out.pop("hub", None)
    return out


class Named(Generic[T]):
    """The objects one factory made, by name, with the arguments each was made with."""

    def __init__(self, factory: str, cls: Callable[..., T]) -> None:
        self._factory = factory
        self._cls = cls
        self._held: dict[str, tuple[T, dict[str, Any]]] = {}

    def get_or_create(self, hub: object, name: str, *args: Any, **kwargs: Any) -> T:
        """``cls(hub, name, *args, **kwargs)`` the first time; the same object after that."""
        asked = _arguments(self._cls, name, *args, **kwargs)
        held = self._held.get(name)
        if held is not None:
            diff = [
                f"{k}={asked[k]!r} (was {held[1][k]!r})"
                for k in held[1]
                if held[1][k] != asked.get(k)
            ]
            if diff:
                raise ConfigError(
                    f"{self._factory}({name!r}) already exists with other arguments: "
                    + ", ".join(diff)
                )
            return held[0]
        made = self._cls(hub, name, *args, **kwargs)
        self._held[name] = (made, asked)
        return made

    def __iter__(self) -> Iterator[T]:
        return iter([made for made, _ in self._held.values()])

    def __len__(self) -> int:
        return len(self._held)
