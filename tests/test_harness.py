"""The real-server harness: servers, raw commands and a real multi-node cluster."""

from __future__ import annotations

import pytest

from lowtide.testing import ServerStartError, ValkeyServer, free_port, raw_command, start_cluster


def test_server_starts_answers_and_stops() -> None:
    server = ValkeyServer().start()
    try:
        assert server.is_running()
        assert raw_command(server.host, server.port, "PING") == "PONG"
        assert server.command("SET", "k", "v") == "OK"
        assert server.command("GET", "k") == b"v"
        assert isinstance(server.command("NOSUCHCOMMAND"), RuntimeError)
        assert "redis_version" in server.info("server") or "valkey_version" in server.info("server")
    finally:
        server.stop()
    assert not server.is_running()
    with pytest.raises(ConnectionRefusedError):
        raw_command(server.host, server.port, "PING", timeout=0.5)


def test_port_clash_is_an_error_not_a_hang() -> None:
    with ValkeyServer() as first:
        second = ValkeyServer(port=first.port, startup_timeout=2)
        with pytest.raises(ServerStartError):
            second.start()
        second.stop()


def test_free_port_is_bindable() -> None:
    import socket

    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_fixture_flushes_between_tests_part1(
    lowtide_url: str, lowtide_server: ValkeyServer
) -> None:
    lowtide_server.command("SET", "leftover", "1")
    assert lowtide_url == lowtide_server.url


def test_fixture_flushes_between_tests_part2(
    lowtide_url: str, lowtide_server: ValkeyServer
) -> None:
    assert lowtide_server.command("GET", "leftover") is None


@pytest.mark.cluster
def test_real_cluster_with_replicas_and_failover() -> None:
    cluster = start_cluster(masters=3, replicas=1)
    try:
        assert len(cluster.masters) == 3
        assert len(cluster.replicas) == 3
        covered = sorted(m.slots for m in cluster.masters if m.slots)
        assert covered[0][0] == 0
        assert covered[-1][1] == 16383
        # a key lands on exactly one master; others answer MOVED
        replies = [m.server.command("SET", "foo", "bar") for m in cluster.masters]
        assert sum(r == "OK" for r in replies) == 1
        assert sum(isinstance(r, RuntimeError) and "MOVED" in str(r) for r in replies) == 2
        replica = cluster.replicas[0]
        cluster.failover(replica)
        assert replica.role == "master"
        assert replica.server.info("replication")["role"] == "master"
        assert cluster.info(replica)["cluster_state"] == "ok"
    finally:
        cluster.stop()
    assert not any(n.server.is_running() for n in cluster.nodes)
