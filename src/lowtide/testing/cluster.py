"""A real Redis Cluster for tests, built from bundled server binaries with no external tools.

:func:`start_cluster` starts ``masters + masters * replicas`` servers with cluster mode on,
splits the 16384 slots evenly over the masters (CLUSTER ADDSLOTSRANGE), introduces every node to
the first (CLUSTER MEET), attaches replicas (CLUSTER REPLICATE), and waits until every node
reports ``cluster_state:ok`` and knows every other node.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import TracebackType

from lowtide.testing.server import ServerStartError, ValkeyServer, free_cluster_port

__all__ = ["Cluster", "ClusterNode", "start_cluster"]

SLOTS = 16384


@dataclass
class ClusterNode:
    """One server of the cluster."""

    server: ValkeyServer
    node_id: str
    role: str  # "master" | "replica"
    slots: tuple[int, int] | None = None
    master_id: str | None = None

    @property
    def url(self) -> str:
        """``redis://host:port`` of this node."""
        return self.server.url


@dataclass
class Cluster:
    """A running cluster; stop it with :meth:`stop` or use it as a context manager."""

    nodes: list[ClusterNode] = field(default_factory=list)

    @property
    def masters(self) -> list[ClusterNode]:
        """Nodes that own slots."""
        return [n for n in self.nodes if n.role == "master"]

    @property
    def replicas(self) -> list[ClusterNode]:
        """Replica nodes."""
        return [n for n in self.nodes if n.role == "replica"]

    @property
    def url(self) -> str:
        """A URL of one node, enough for a cluster client to discover the rest."""
        return self.nodes[0].url

    def __enter__(self) -> Cluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop every node."""
        for n in self.nodes:
            n.server.stop()

    def info(self, node: ClusterNode) -> dict[str, str]:
        """``CLUSTER INFO`` of ``node``."""
        reply = node.server.command("CLUSTER", "INFO")
        return dict(line.split(":", 1) for line in reply.decode().splitlines() if ":" in line)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Wait until every node says ``cluster_state:ok`` and sees every node."""
        deadline = time.monotonic() + timeout
        want = len(self.nodes)
        while time.monotonic() < deadline:
            ok = True
            for n in self.nodes:
                info = self.info(n)
                if (
                    info.get("cluster_state") != "ok"
                    or int(info.get("cluster_known_nodes", 0)) != want
                ):
                    ok = False
                    break
                if n.role == "replica" and not self._replica_linked(n):
                    ok = False
                    break
            if ok:
                return
            time.sleep(0.05)  # polling a condition with a deadline
        raise ServerStartError(f"cluster not healthy after {timeout}s")

    def _replica_linked(self, node: ClusterNode) -> bool:
        info = node.server.info("replication")
        return info.get("role") == "slave" and info.get("master_link_status") == "up"

    def failover(self, replica: ClusterNode, timeout: float = 30.0) -> None:
        """Promote ``replica`` with CLUSTER FAILOVER and wait until the roles have swapped."""
        reply = replica.server.command("CLUSTER", "FAILOVER")
        if isinstance(reply, Exception):
            raise reply
        old_master = next(n for n in self.nodes if n.node_id == replica.master_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if replica.server.info("replication").get("role") == "master":
                replica.role, old_master.role = "master", "replica"
                replica.slots, old_master.slots = old_master.slots, None
                old_master.master_id, replica.master_id = replica.node_id, None
                self.wait_healthy(timeout)
                return
            time.sleep(0.05)
        raise ServerStartError(f"failover did not complete within {timeout}s")


def _start_node(node_timeout_ms: int) -> ValkeyServer:
    """One cluster node on a port whose bus port is free too (retried on a clash)."""
    last: ServerStartError | None = None
    for _ in range(5):
        try:
            return ValkeyServer(
                port=free_cluster_port(),
                args=[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    str(node_timeout_ms),
                    "--cluster-require-full-coverage",
                    "yes",
                ],
            ).start()
        except ServerStartError as exc:
            last = exc
    raise ServerStartError(f"no cluster node started in 5 tries: {last}")


def start_cluster(masters: int = 3, replicas: int = 0, *, node_timeout_ms: int = 2000) -> Cluster:
    """Start a real cluster of ``masters`` masters, each with ``replicas`` replicas."""
    if masters < 1 or replicas < 0:
        raise ValueError("need at least one master and a non-negative replica count")
    cluster = Cluster()
    try:
        for i in range(masters * (1 + replicas)):
            server = _start_node(node_timeout_ms)
            node_id = server.command("CLUSTER", "MYID").decode()
            role = "master" if i < masters else "replica"
            cluster.nodes.append(ClusterNode(server, node_id, role))
        per = SLOTS // masters
        for i, node in enumerate(cluster.masters):
            lo = i * per
            hi = SLOTS - 1 if i == masters - 1 else lo + per - 1
            reply = node.server.command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
            if isinstance(reply, Exception):
                raise reply
            node.slots = (lo, hi)
        first = cluster.nodes[0].server
        for node in cluster.nodes[1:]:
            node.server.command("CLUSTER", "MEET", first.host, first.port)
        _wait_known(cluster)
        for j, node in enumerate(cluster.replicas):
            master = cluster.masters[j % masters]
            reply = node.server.command("CLUSTER", "REPLICATE", master.node_id)
            if isinstance(reply, Exception):
                raise reply
            node.master_id = master.node_id
        cluster.wait_healthy()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _wait_known(cluster: Cluster, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    want = len(cluster.nodes)
    while time.monotonic() < deadline:
        if all(int(cluster.info(n).get("cluster_known_nodes", 0)) == want for n in cluster.nodes):
            return
        time.sleep(0.05)  # polling a condition with a deadline
    raise ServerStartError("nodes did not meet")


@contextlib.contextmanager
def running_cluster(masters: int = 3, replicas: int = 0) -> Iterator[Cluster]:
    """``with running_cluster() as c:`` starts a cluster and always stops it."""
    cluster = start_cluster(masters, replicas)
    try:
        yield cluster
    finally:
        cluster.stop()
