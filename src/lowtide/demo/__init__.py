"""``lowtide demo``: the incident and its fixes, replayed on a real server.

``trace`` builds the workload, ``strategies`` holds the ways to serve it, ``worker`` is one
machine (a real process), ``runner`` measures a run from the server's side, ``bound`` counts
what any correct protocol must send, ``analysis`` turns logs into numbers and ``chart`` draws
them.
"""

from lowtide.demo.analysis import StrategyResult
from lowtide.demo.bound import LowerBound, lower_bound
from lowtide.demo.runner import DemoResult, ProgressEvent, run_demo
from lowtide.demo.trace import DemoConfig

__all__ = [
    "DemoConfig",
    "DemoResult",
    "LowerBound",
    "ProgressEvent",
    "StrategyResult",
    "lower_bound",
    "run_demo",
]
