"""The fleet-wide circuit breaker and its pure state machine."""

from lowtide.breaker.breaker import BreakerKwargs, CircuitBreaker, Transition
from lowtide.breaker.core import BreakerCore, SlidingWindow, State

__all__ = ["BreakerCore", "BreakerKwargs", "CircuitBreaker", "SlidingWindow", "State", "Transition"]
