"""Argument checks with one wording: every :class:`ConfigError` names the field, says what
was expected and shows what was given (``ttl: expected a number of seconds > 0, got -1``).

``bool`` is refused wherever a number is expected (``True`` is an ``int`` in Python), and so is
NaN (it compares false with everything, so no bound would hold).
"""

from __future__ import annotations

import math
from typing import Any

from lowtide.errors import ConfigError

__all__ = ["MAX_SECONDS", "fraction", "integer", "is_number", "optional_seconds", "seconds"]


def is_number(value: Any) -> bool:
    """True for an int or float that is not a bool and not NaN."""
    return isinstance(value, int | float) and not isinstance(value, bool) and not math.isnan(value)


#: the longest duration accepted (10 years): beyond it, conversions to the milliseconds of
#: Redis's PX/PEXPIRE overflow, and nothing sensible lasts longer
MAX_SECONDS = 10 * 365 * 86_400.0


def seconds(name: str, value: Any, *, allow_zero: bool = False, minimum: float = 0.0) -> float:
    """A finite duration in seconds, ``> 0`` (or ``>= 0`` with ``allow_zero``), at least
    ``minimum`` and at most :data:`MAX_SECONDS`."""
    bound = ">= 0" if allow_zero else "> 0"
    if not is_number(value) or value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"{name}: expected a number of seconds {bound}, got {value!r}")
    if not math.isfinite(value) or value > MAX_SECONDS:
        raise ConfigError(f"{name}: expected at most {MAX_SECONDS:.0f} seconds, got {value!r}")
    if value != 0 and value < minimum:
        raise ConfigError(f"{name}: expected at least {minimum:g} seconds, got {value!r}")
    return float(value)


def optional_seconds(name: str, value: Any) -> float | None:
    """A duration ``> 0`` (finite, at most :data:`MAX_SECONDS`) or None."""
    if value is None:
        return None
    if not is_number(value) or not value > 0:
        raise ConfigError(f"{name}: expected seconds > 0 or None, got {value!r}")
    return seconds(name, value)


def integer(name: str, value: Any, *, minimum: int = 1) -> int:
    """An int (not a bool) ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return value


def fraction(name: str, value: Any, *, allow_one: bool = True) -> float:
    """A number in ``(0, 1]`` (or ``(0, 1)`` without ``allow_one``)."""
    interval = "(0, 1]" if allow_one else "(0, 1)"
    ok = is_number(value) and value > 0 and (value <= 1 if allow_one else value < 1)
    if not ok:
        raise ConfigError(f"{name}: expected a fraction in {interval}, got {value!r}")
    return float(value)
