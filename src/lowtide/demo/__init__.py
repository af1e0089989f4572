"""``lowtide demo``: the incident and its fixes, replayed on a real server.

``trace`` builds the workload, ``strategies`` holds the three ways to serve it, ``worker`` is
one machine (a real process), ``runner`` measures a run from the server's side, ``analysis``
turns logs into numbers and ``chart`` draws them.
"""

from lowtide.demo.analysis import StrategyResult
from lowtide.demo.runner import DemoResult, run_demo
from lowtide.demo.trace import DemoConfig

__all__ = ["DemoConfig", "DemoResult", "StrategyResult", "run_demo"]
