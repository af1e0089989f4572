"""Every way a hub can learn about writes, as one pytest parameter (limits' ``ALL_STORAGES``).

``LISTENER_MODES`` lists them; ``@pytest.mark.parametrize("deployment", LISTENER_MODES,
indirect=True)`` on a test class runs each test once per mode, against a :class:`Deployment`:
real servers (or a real cluster) and the hub options for that mode. What each mode documents as
different is a field of :class:`ListenerMode`, so tests say ``if mode.sees_foreign_writes``
instead of testing the mode's name.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from redis.crc import key_slot

from lowtide import Lowtide
from lowtide.testing import Cluster, ValkeyServer, server_commands


@dataclass(frozen=True)
class ListenerMode:
    """One invalidation listener mode and what it documents."""

    #: Lowtide(...) keyword arguments that select the mode
    options: dict[str, Any]
    #: ``health()["invalidation"]["mode"]`` once the listener is up
    health: str
    #: a real multi-node cluster (one listener connection per primary)
    cluster: bool = False
    #: CLIENT TRACKING pushes writes by any client; the pub/sub backplane carries only what
    #: lowtide's writers PUBLISH, so other programs' writes are bounded by max_staleness only
    sees_foreign_writes: bool = True
    #: pub/sub sends exactly one message per write, so a writer swallows its own echo and keeps
    #: its copy; CLIENT TRACKING on one server sends cache writes over the listener's NOLOOP
    #: writer connection, so no echo comes and the writer keeps its copy; where the write is
    #: pushed back (RESP3 listener, a cluster, ``noloop_writes=False``) the echo, which may
    #: merge other writes of its server cycle, demotes the writer's copy (next read: 1 GET)
    keeps_own_writes: bool = False
    #: writers PUBLISH the keys they changed (1 extra command per write or batch)
    publishes: bool = False
    #: the server announces FLUSHALL at once (CLIENT TRACKING); keyspace notifications have no
    #: event for it: the listener's sentinel check notices it within three keepalive periods
    flush_pushed: bool = True


TRACKING_RESP2 = ListenerMode(options={}, health="tracking", keeps_own_writes=True)
TRACKING_ECHO = ListenerMode(options={"noloop_writes": False}, health="tracking")
TRACKING_RESP3 = ListenerMode(options={"listener_resp3": True}, health="tracking")
PUBSUB = ListenerMode(
    options={"invalidation": "pubsub"},
    health="pubsub",
    sees_foreign_writes=False,
    keeps_own_writes=True,
    publishes=True,
)
#: keyspace notifications: the server publishes every change by anyone, one message per change
#: in order, so a writer swallows its own echo exactly as on the backplane
KEYSPACE = ListenerMode(
    options={"invalidation": "keyspace"},
    health="keyspace",
    keeps_own_writes=True,
    flush_pushed=False,
)
CLUSTER = ListenerMode(options={}, health="tracking", cluster=True)
KEYSPACE_CLUSTER = replace(KEYSPACE, cluster=True)

LISTENER_MODES = [
    pytest.param(TRACKING_RESP2, id="tracking-resp2"),
    pytest.param(TRACKING_ECHO, id="tracking-echo"),
    pytest.param(TRACKING_RESP3, id="tracking-resp3"),
    pytest.param(PUBSUB, id="pubsub"),
    pytest.param(KEYSPACE, id="keyspace"),
    pytest.param(CLUSTER, id="cluster", marks=pytest.mark.cluster),
    pytest.param(KEYSPACE_CLUSTER, id="keyspace-cluster", marks=pytest.mark.cluster),
]


@dataclass
class Deployment:
    """Real servers in one listener mode, emptied before the test."""

    mode: ListenerMode
    url: str
    #: the primaries (one server unless on a cluster)
    servers: list[ValkeyServer]
    cluster: Cluster | None = None
    #: ``(first slot, last slot, primary)`` on a cluster
    slots: list[tuple[int, int, ValkeyServer]] = field(default_factory=list)

    def hub(self, instance: str = "a", **options: Any) -> Lowtide:
        """A hub in this mode (use it with ``async with``)."""
        return Lowtide(self.url, instance=instance, **{**self.mode.options, **options})

    def server_for(self, key: str) -> ValkeyServer:
        """The server that owns ``key`` (its slot's primary on a cluster)."""
        if self.cluster is None:
            return self.servers[0]
        slot = key_slot(key.encode())
        for lo, hi, server in self.slots:
            if lo <= slot <= hi:
                return server
        raise AssertionError(f"no primary owns slot {slot}")

    def command(self, *args: Any, key: str | None = None) -> Any:
        """Run one command as another program would (redis-cli, another service).

        On a cluster it goes to the primary of ``key`` (default: the command's first argument
        after its name). Error replies raise.
        """
        target = key if key is not None else (str(args[1]) if len(args) > 1 else "")
        reply = self.server_for(target).command(*args)
        if isinstance(reply, Exception):
            raise reply
        return reply

    def knows(self, command: str) -> bool:
        """True if the server has ``command`` (server naming: ``client|tracking``)."""
        return self.servers[0].command("COMMAND", "INFO", command) != [None]

    def commandstats(self) -> dict[str, int]:
        """INFO commandstats, summed over the primaries (one INFO each)."""
        return server_commands(self.servers)

    def kill_listeners(self) -> int:
        """Cut every invalidation listener connection (tracking or subscribed clients)."""
        killed = 0
        for server in self.servers:
            for line in server.command("CLIENT", "LIST").decode().splitlines():
                fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
                if "t" in fields["flags"] or "P" in fields["flags"]:
                    server.command("CLIENT", "KILL", "ID", fields["id"])
                    killed += 1
        return killed


def deploy(request: pytest.FixtureRequest, mode: ListenerMode) -> Deployment:
    """Real servers for ``mode``, from the plugin's fixtures, emptied (FLUSHALL) first."""
    if not mode.cluster:
        server: ValkeyServer = request.getfixturevalue("lowtide_server")
        url: str = request.getfixturevalue("lowtide_url")  # flushed
        return Deployment(mode, url, [server])
    cluster: Cluster = request.getfixturevalue("lowtide_cluster")
    primaries = cluster.masters
    for node in primaries:
        node.server.flushall()
    slots = [(n.slots[0], n.slots[1], n.server) for n in primaries if n.slots is not None]
    return Deployment(mode, cluster.url, [n.server for n in primaries], cluster, slots)
