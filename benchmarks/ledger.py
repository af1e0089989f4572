"""What counting every command costs: the ledger's hook vs plain redis-py, side by side.

Two measurements:

* ``pack``: client CPU to pack one GET with redis-py's plain connection vs lowtide's counting
  connection plus the ledger record (no network: isolates the hook);
* ``roundtrip``: one GET round trip to a real embedded Valkey with a plain redis-py client vs
  through the lowtide gateway (median of repeated runs, alternating).

Run: ``python -m benchmarks.ledger``.
"""

from __future__ import annotations

import asyncio
import statistics
import time

from redis.asyncio import Redis
from redis.asyncio.connection import Connection

from benchmarks._common import per_call_us, table, write
from lowtide import Lowtide
from lowtide.context import Attribution
from lowtide.ledger import Ledger
from lowtide.redis.connection import CountingConnection
from lowtide.testing import ValkeyServer

ATT = Attribution("bench", "lt:c:bench:*", "t1")


def pack_costs() -> dict[str, float]:
    ledger = Ledger()
    plain = Connection()
    counting = CountingConnection(lowtide_ledger=ledger)

    def plain_pack() -> None:
        plain.pack_command("GET", "lt:c:bench:t1:key")

    def counting_pack() -> None:
        counting.pack_command("GET", "lt:c:bench:t1:key")
        entries, counting._lt_pending = counting._lt_pending, []
        ledger.record(entries)

    n = 100_000
    return {
        "plain_pack_us": per_call_us(plain_pack, n),
        "counting_pack_and_record_us": per_call_us(counting_pack, n),
    }


async def roundtrips(url: str, rounds: int = 9, n: int = 2000) -> dict[str, float]:
    plain = Redis.from_url(url, protocol=2, lib_name=None, lib_version=None)
    await plain.set("k", "v")
    plain_runs, lt_runs = [], []
    async with Lowtide(url) as lt:
        gw = lt.gateway
        for _ in range(rounds):
            t0 = time.perf_counter()
            for _ in range(n):
                await plain.get("k")
            plain_runs.append((time.perf_counter() - t0) / n * 1e6)
            t0 = time.perf_counter()
            for _ in range(n):
                await gw.call(ATT, "GET", "k")
            lt_runs.append((time.perf_counter() - t0) / n * 1e6)
    await plain.aclose()
    return {
        "plain_redis_py_get_us": statistics.median(plain_runs),
        "lowtide_gateway_get_us": statistics.median(lt_runs),
    }


def main() -> None:
    """Measure and report."""
    pack = pack_costs()
    with ValkeyServer() as server:
        rt = asyncio.run(roundtrips(server.url))
    overhead_pack = pack["counting_pack_and_record_us"] - pack["plain_pack_us"]
    overhead_rt = rt["lowtide_gateway_get_us"] - rt["plain_redis_py_get_us"]
    rows = [
        [
            "pack one GET (no network)",
            f"{pack['plain_pack_us']:.2f}",
            f"{pack['counting_pack_and_record_us']:.2f}",
            f"{overhead_pack:+.2f}",
        ],
        [
            "GET round trip, loopback",
            f"{rt['plain_redis_py_get_us']:.1f}",
            f"{rt['lowtide_gateway_get_us']:.1f}",
            f"{overhead_rt:+.1f}",
        ],
    ]
    print(table(["measure", "redis-py µs", "lowtide µs", "difference µs"], rows))
    print(
        "wrote",
        write(
            "ledger",
            {
                "pack": pack,
                "roundtrip": rt,
                "overhead_pack_us": overhead_pack,
                "overhead_roundtrip_us": overhead_rt,
            },
        ),
    )


if __name__ == "__main__":
    main()
