"""What the gateway's send observer costs: GET round trips through the gateway with no
observer, with the Prometheus collector's round-trip histogram, and with OpenTelemetry spans of
lowtide's own (in-memory exporter), interleaved in one run against one embedded Valkey.

Each configuration runs ``N`` sequential GETs per round; the table gives the median and range
over the rounds of the time per GET. Run: ``python -m benchmarks.send_observer``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from benchmarks._common import table, write
from lowtide import Lowtide
from lowtide.context import Attribution
from lowtide.integrations.prometheus import LowtideCollector
from lowtide.testing import ValkeyServer

ATT = Attribution("cache", "lt:c:bench:*", "t1")
N = 2000


async def _round(lt: Lowtide) -> float:
    t0 = time.perf_counter()
    for _ in range(N):
        await lt.gateway.call(ATT, "GET", "lt:c:bench:t1:k")
    return (time.perf_counter() - t0) / N * 1e6


def _histogram(lt: Lowtide) -> Callable[[], None]:
    collector = LowtideCollector(lt).register(CollectorRegistry())

    def stop() -> None:
        asyncio.get_running_loop().create_task(collector.aclose())

    return stop


def _spans(lt: Lowtide) -> Callable[[], None]:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from lowtide.integrations.otel import trace_sends

    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    stop = trace_sends(lt, provider)

    def done() -> None:
        stop()
        exporter.clear()

    return done


async def measure(rounds: int) -> dict[str, Any]:
    configs: dict[str, Callable[[Lowtide], Callable[[], None]] | None] = {
        "no observer": None,
        "Prometheus histogram": _histogram,
        "OpenTelemetry spans": _spans,
    }
    runs: dict[str, list[float]] = {name: [] for name in configs}
    with ValkeyServer() as server:
        async with Lowtide(server.url) as lt:
            await _round(lt)  # warm up: connection, code paths
            for _ in range(rounds):
                for name, install in configs.items():
                    stop = install(lt) if install is not None else None
                    runs[name].append(await _round(lt))
                    if stop is not None:
                        stop()
                    await asyncio.sleep(0)
    return {
        name: {"median": statistics.median(r), "min": min(r), "max": max(r)}
        for name, r in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    result = asyncio.run(measure(args.rounds))
    base = result["no observer"]["median"]
    rows = [
        [name, f"{t['median']:.1f} ({t['min']:.1f}-{t['max']:.1f})", f"{t['median'] - base:+.1f}"]
        for name, t in result.items()
    ]
    print(table(["configuration", "us per GET round trip", "vs none"], rows))
    print(f"median (min-max) over {args.rounds} rounds of {N} GETs, interleaved")
    print(f"wrote {write('send_observer', {'rounds': args.rounds, 'per_get_us': result})}")


if __name__ == "__main__":
    main()
