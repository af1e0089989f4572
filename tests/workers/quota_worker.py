"""A process that counts quota units and is then killed with SIGKILL (no shutdown at all).

Usage: python -m tests.workers.quota_worker URL SPOOL UNITS
Sends UNITS billed commands for tenant "pro-k", waits for the spool to be written, prints
"ready" and kills itself before any flush (flush_interval is an hour).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

from lowtide import Lowtide
from lowtide.context import Attribution


async def main(url: str, spool: str, units: int) -> None:
    lt = Lowtide(url, instance="doomed", fleet_switch=False)
    await lt.start()
    lt.quotas({"pro": 1_000_000}, lambda t: "pro", flush_interval=3600, spool=spool)
    att = Attribution("app", "-", "pro-k")
    for i in range(units):
        await lt.gateway.call(att, "GET", f"k{i}")
    await asyncio.sleep(1.5)  # the spool is written every second while counts change
    print("ready", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
