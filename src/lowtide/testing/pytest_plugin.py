"""pytest fixtures that give tests a real server (registered as the ``lowtide`` pytest plugin).

* ``lowtide_server``: one Valkey server for the whole session;
* ``lowtide_url``: that server's URL, with every key deleted before the test;
* ``lowtide_fresh_server``: a new server for this test alone (exact INFO counters, faults);
* ``lowtide_cluster``: a real 3-master cluster for the module.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from lowtide.testing.cluster import Cluster, start_cluster
from lowtide.testing.server import ValkeyServer


@pytest.fixture(scope="session")
def lowtide_server() -> Iterator[ValkeyServer]:
    """A real Valkey server shared by the session."""
    with ValkeyServer() as server:
        yield server


@pytest.fixture
def lowtide_url(lowtide_server: ValkeyServer) -> str:
    """URL of the shared server, emptied (FLUSHALL) before the test."""
    if not lowtide_server.is_running():
        lowtide_server.start()
    lowtide_server.flushall()
    return lowtide_server.url


@pytest.fixture
def lowtide_fresh_server() -> Iterator[ValkeyServer]:
    """A new real server for this test alone."""
    with ValkeyServer() as server:
        yield server


@pytest.fixture(scope="module")
def lowtide_cluster() -> Iterator[Cluster]:
    """A real 3-master Redis Cluster for the module."""
    cluster = start_cluster(3)
    try:
        yield cluster
    finally:
        cluster.stop()
