"""The fleet-wide circuit breaker and its pure state machine."""

from lowtide.breaker.breaker import BreakerKwargs, CircuitBreaker, Transition
from lowtide.breaker.core import BreakerCore, SlidingWindow, State
from lowtide.breaker.guard import Guard

__all__ = [
    "BreakerCore",
    "BreakerKwargs",
    "CircuitBreaker",
    "Guard",
    "SlidingWindow",
    "State",
    "Transition",
]
