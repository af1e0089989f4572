"""The fleet-wide circuit breaker and its pure state machine."""

from lowtide.breaker.breaker import CircuitBreaker, Transition
from lowtide.breaker.core import BreakerCore, SlidingWindow, State

__all__ = ["BreakerCore", "CircuitBreaker", "SlidingWindow", "State", "Transition"]
