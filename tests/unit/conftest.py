"""``tests/unit``: tests that need no Redis server.

They run with ``pytest tests/unit`` on a machine with no server binary at all (pure cores,
codecs, settings, key building, the ledger's bookkeeping, local-only hubs). Every test here is
marked ``unit`` (by ``tests/conftest.py``).

To keep it so, the server fixtures of :mod:`lowtide.testing.pytest_plugin` are replaced here by
ones that fail, and starting a :class:`~lowtide.testing.ValkeyServer` (directly, through
``start_cluster`` or the CLI's embedded server) fails the test: a test that needs a server
belongs in ``tests/``.
"""

from __future__ import annotations

from typing import NoReturn

import pytest

from lowtide.testing import ValkeyServer

WHY = "tests/unit needs no server: move a test that needs one to tests/"


def _refuse(*args: object, **kwargs: object) -> NoReturn:
    pytest.fail(f"a ValkeyServer was started: {WHY}")


@pytest.fixture(autouse=True)
def _no_server_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ValkeyServer, "start", _refuse)


@pytest.fixture
def lowtide_server() -> NoReturn:
    pytest.fail(f"fixture lowtide_server: {WHY}")


@pytest.fixture
def lowtide_url() -> NoReturn:
    pytest.fail(f"fixture lowtide_url: {WHY}")


@pytest.fixture
def lowtide_fresh_server() -> NoReturn:
    pytest.fail(f"fixture lowtide_fresh_server: {WHY}")


@pytest.fixture
def lowtide_cluster() -> NoReturn:
    pytest.fail(f"fixture lowtide_cluster: {WHY}")
