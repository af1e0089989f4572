"""docs/fastapi.md's app under ``uvicorn --workers 2`` in prometheus-client's multiprocess
mode, driven over real HTTP: every scrape (answered by either worker) counts both workers'
commands, equal to the server's own ``INFO commandstats``; so do the files the workers leave
behind once they exited; the limiter's series match the HTTP answers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

import lowtide
from lowtide.testing import ValkeyServer, free_port
from tests.integrations.helpers import by_label, docs_app_source, parse, total
from tests.integrations.serverside import ServerCounts, metrics_match_server

CLOSE = {"connection": "close"}  # a new connection per request: both workers get some


def start(tmp: Path, url: str, port: int) -> subprocess.Popen[bytes]:
    (tmp / "app.py").write_text(docs_app_source())
    prom = tmp / "prom"
    prom.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(lowtide.__file__).resolve().parents[1]),
        "LOWTIDE_REDIS_URL": url,
        "PROMETHEUS_MULTIPROC_DIR": str(prom),
    }
    command = [sys.executable, "-m", "uvicorn", "app:app", "--workers", "2"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--app-dir", str(tmp)]
    return subprocess.Popen([*command, "--log-level", "warning"], env=env)


async def test_two_workers_metrics_match_the_server(
    lowtide_fresh_server: ValkeyServer, tmp_path: Path
) -> None:
    counts = ServerCounts(lowtide_fresh_server)
    port = free_port()
    proc = start(tmp_path, lowtide_fresh_server.url, port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            workers: set[str] = set()

            async def both_up() -> None:
                while len(workers) < 2:
                    assert proc.poll() is None, "uvicorn exited"
                    try:
                        r = await http.get("/health", headers=CLOSE)
                    except httpx.TransportError:
                        await asyncio.sleep(0.1)
                        continue
                    if r.json()["lowtide"]["invalidation"]["healthy"]:
                        workers.add(r.json()["lowtide"]["instance"])

            await asyncio.wait_for(both_up(), 60)

            answers: Counter[tuple[str, int]] = Counter()

            async def client(n: int) -> None:
                for i in range(50):
                    tenant = {"x-tenant-id": f"t{(n + i) % 5}", **CLOSE}
                    if i % 3 == 0:
                        r = await http.get(f"/profiles/u{i % 7}", headers=tenant)
                    elif i % 3 == 1:
                        r = await http.get("/search", params={"q": "x"}, headers=tenant)
                    else:
                        r = await http.post("/charges", params={"amount": i + 1}, headers=tenant)
                    answers[(r.request.url.path, r.status_code)] += 1

            await asyncio.gather(*(client(n) for n in range(8)))
            assert sum(answers.values()) == 400
            assert answers[("/charges", 200)] == sum(
                n for (path, _), n in answers.items() if path == "/charges"
            )

            async def scrape() -> dict[Any, float]:
                return parse((await http.get("/metrics", headers=CLOSE)).text)

            server = await metrics_match_server(scrape, counts)
            m = await scrape()
            assert total(m, "lowtide_mode", mode="distributed") == 2  # both workers, summed
            assert total(m, "lowtide_build_info") == 1  # livemax: one series, no pid
            decisions = by_label(m, "lowtide_limiter_decisions_total", "decision")
            assert decisions.get("allowed", 0) == answers[("/search", 200)]
            assert decisions.get("denied", 0) == answers[("/search", 429)]
            reads = total(m, "lowtide_cache_hits_total", cache="profiles")
            reads += total(m, "lowtide_cache_misses_total", cache="profiles")
            profiles = sum(n for (path, _), n in answers.items() if path.startswith("/profiles"))
            assert reads == profiles
            # histograms, summed over workers: every loader call timed once, and round trips
            # timed by component (a pipeline or script is one, so never more than commands)
            read = "lowtide_cache_read_duration_seconds"
            loads = total(m, "lowtide_cache_loads_total", cache="profiles")
            assert total(m, f"{read}_count", cache="profiles", source="load") == loads >= 1
            inf = total(m, f"{read}_bucket", cache="profiles", source="load", le="+Inf")
            assert inf == loads
            trips = by_label(m, "lowtide_redis_command_duration_seconds_count", "component")
            sent = by_label(m, "lowtide_redis_commands_total", "component")
            assert trips["cache"] >= 1
            assert trips["limiter"] >= 1
            assert all(0 < n <= sent[c] for c, n in trips.items())
            infs = by_label(
                {k: v for k, v in m.items() if ("le", "+Inf") in k[1]},
                "lowtide_redis_command_duration_seconds_bucket",
                "component",
            )
            assert infs == trips
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    # the workers are gone: what they wrote last is every command the server received
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(tmp_path / "prom"))
    left = parse(generate_latest(registry).decode())
    exported = {
        k: int(v) for k, v in by_label(left, "lowtide_redis_commands_total", "command").items() if v
    }
    final = counts.now()
    assert exported == final
    assert set(server) <= set(final)
    assert total(left, "lowtide_mode") == 0  # marked dead: their live gauges are gone
    assert len(list((tmp_path / "prom").glob("counter_*.db"))) == 2  # one file per worker
