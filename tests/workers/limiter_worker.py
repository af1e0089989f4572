"""One "machine" hammering a fleet-wide limit: run as a real process by tests/test_limiter.py.

Usage: python -m tests.workers.limiter_worker URL ALGORITHM LIMIT PER SECONDS START OUT
Waits until wall time START, then acquires as fast as it is allowed for SECONDS and writes the
server-aligned wall time of every admission (and the commands it sent) to OUT as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from lowtide import Lowtide
from lowtide.testing import ledger_total


async def main(argv: list[str]) -> dict[str, object]:
    url, algorithm, limit, per, seconds, start = argv
    async with Lowtide(url) as lt:
        limiter = lt.rate_limiter(
            "fleet-test",
            int(limit),
            float(per),
            algorithm=algorithm,  # type: ignore[arg-type]
        )
        await lt.sync_server_clock()
        await asyncio.sleep(max(0.0, float(start) - time.time()))
        admitted: list[float] = []
        denied = 0
        end = time.monotonic() + float(seconds)
        while time.monotonic() < end:
            d = await limiter.acquire("t1")
            if d.allowed:
                admitted.append(time.time() + lt.server_clock_offset)
            else:
                denied += 1
                await asyncio.sleep(min(d.retry_after, 0.002))
        commands = ledger_total(lt, component="limiter")
        return {"admitted": admitted, "denied": denied, "commands": commands}


if __name__ == "__main__":
    result = asyncio.run(main(sys.argv[1:-1]))
    with open(sys.argv[-1], "w") as f:
        json.dump(result, f)
