"""Run redis-py's own asyncio command tests against the drop-in client (``lt.redis()``).

    python scripts/redis_py_compat.py                 # the cached commands' tests
    python scripts/redis_py_compat.py --all           # every test of test_commands.py
    python scripts/redis_py_compat.py --sdist DIR     # an sdist already downloaded to DIR

What it does, step by step:

1. downloads the source distribution of the redis-py version installed here
   (``pip download --no-binary :all: --no-deps redis==<version>``; redis-py is MIT licensed; its
   tests are not copied into lowtide) and unpacks it in a temporary folder, removing its
   ``redis/`` package so the tests import the installed redis-py that lowtide subclasses;
2. starts a real Valkey server (``lowtide.testing.ValkeyServer``);
3. appends a shim to ``tests/test_asyncio/conftest.py``: redis-py's ``create_redis`` fixture
   builds every client with ``Lowtide(url).redis(cache_prefixes=<every printable ASCII
   character>, **the test's options)``, so every key a test uses is under a cached prefix, and
   each cacheable read is made **twice**: the second answer, the one the test checks, comes
   from process memory whenever the first could fill it, and must equal the first;
4. runs the selected tests twice, once with the shim and once with plain redis-py (the
   baseline: some tests need Redis-only commands this Valkey does not have), and prints both
   outcomes and how many reads were answered from process memory.

The selection (without ``--all``) is every test whose name names a command the drop-in caches
(GET, MGET, HGET, HMGET, HGETALL, EXISTS, SMEMBERS, SISMEMBER, LRANGE, ZSCORE, ZRANGE, ...).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from lowtide.dropin.reads import CACHED
from lowtide.testing import ValkeyServer

SHIM = """

# ---- lowtide drop-in shim (appended by lowtide's scripts/redis_py_compat.py) ----------------
import json as _lt_json
import os as _lt_os
import string as _lt_string

from lowtide import Lowtide as _LtHub

_LT_PREFIXES = tuple(c for c in _lt_string.printable.strip() if c != "_")
_LT_STATS = {"reads_twice": 0, "served_from_l1": 0, "mismatches": 0}
_LT_REFUSED = {"url", "host", "port", "db", "path", "unix_socket_path", "username",
               "password", "credential_provider", "connection_pool", "connection_class", "ssl"}


def _lt_double_reads(client):
    engine = client.lt_engine
    execute = engine.execute

    async def twice(c, args, options):
        first = await execute(c, args, dict(options))
        plan = engine.prefixes.plan(
            args, c.lt_encode, never_decode=c.lt_never_decode(options), newline_ok=True
        )
        if plan is None or c.lt_direct is not None:
            return first
        hits = engine.stats.hits
        second = await execute(c, args, dict(options))
        _LT_STATS["reads_twice"] += 1
        if engine.stats.hits > hits:
            _LT_STATS["served_from_l1"] += 1
        if second != first or type(second) is not type(first):
            _LT_STATS["mismatches"] += 1
            raise AssertionError(f"held answer {second!r} != server answer {first!r} for {args!r}")
        return second

    engine.execute = twice


@pytest_asyncio.fixture(
    params=[
        pytest.param(
            (True,),
            marks=pytest.mark.skipif(
                'config.REDIS_INFO["cluster_enabled"]', reason="cluster mode enabled"
            ),
        ),
        (False,),
    ],
    ids=["single", "pool"],
)
async def create_redis(request):
    (single_connection,) = request.param
    teardown = []

    async def client_factory(
        url: str = request.config.getoption("--redis-url"),
        cls=redis.Redis,
        flushdb=True,
        **kwargs,
    ):
        if "protocol" not in url and kwargs.get("protocol") is None:
            protocol_opt = request.config.getoption("--protocol")
            if protocol_opt:
                kwargs["protocol"] = protocol_opt
        single = kwargs.pop("single_connection_client", False) or single_connection
        if cls is not redis.Redis or _LT_REFUSED & kwargs.keys():
            # a test of another client class or of another server/credentials: plain redis-py
            pool = redis.ConnectionPool(**{**parse_url(url), **kwargs})
            client = cls(connection_pool=pool)
            hub = None
        else:
            hub = _LtHub(url, namespace="_lt", fleet_switch=False)
            client = hub.redis(_LT_PREFIXES, **kwargs)
            _lt_double_reads(client)
            await hub.start()
            assert await hub.ready(10)
            # the listener's self-test key (it expires after 10 s): tests that list the
            # database (KEYS, SCAN, DBSIZE, RANDOMKEY) expect only what they wrote
            await client.delete(f"_lt:x:selftest::{hub.settings.instance}")
        if single:
            client = client.client()
            await client.initialize()

        async def close():
            if flushdb and "username" not in kwargs:
                try:
                    await client.flushdb()
                except redis.ConnectionError:
                    await client.flushdb()
            await client.aclose()
            await client.connection_pool.disconnect()
            if hub is not None:
                await hub.aclose()

        teardown.append(close)
        return client

    yield client_factory
    for close in teardown:
        await close()


def pytest_sessionfinish(session, exitstatus):
    out = _lt_os.environ.get("LOWTIDE_COMPAT_STATS")
    if out:
        with open(out, "w") as f:
            _lt_json.dump(_LT_STATS, f)
"""


def selection(all_tests: bool) -> list[str]:
    """pytest ``-k`` expression parts: tests naming a cached command (or everything)."""
    if all_tests:
        return []
    names = [*sorted(c.lower() for c in CACHED), "never_decode", "empty_response", "get_set_bit"]
    return ["-k", " or ".join(f"test_{n}" for n in names)]


def fetch_sdist(version: str, into: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-binary",
            ":all:",
            "--no-deps",
            f"redis=={version}",
            "-d",
            str(into),
        ],
        check=True,
    )
    (tarball,) = into.glob(f"redis-{version}.tar.gz")
    return tarball


def outcome(report: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    found = re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed)", report)
    for n, what in found:
        counts[what.rstrip("s") if what == "errors" else what] = int(n)
    return counts


def failures(report: str) -> list[str]:
    """The test ids a pytest report lists as FAILED or ERROR."""
    return [
        line.split(" ", 1)[1].split(" - ")[0].split("::", 1)[-1]
        for line in report.splitlines()
        if line.startswith(("FAILED", "ERROR"))
    ]


def run(tests: Path, url: str, args: list[str], stats: Path | None) -> tuple[dict[str, int], str]:
    env = dict(os.environ)
    if stats is not None:
        env["LOWTIDE_COMPAT_STATS"] = str(stats)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/test_asyncio/test_commands.py",
            "--redis-url",
            url,
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            "-o",
            "addopts=",
            "--timeout=60",
            "-m",
            "not onlycluster",  # as redis-py's own CI runs against a single server
            *args,
        ],
        cwd=tests.parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-2000:]
    return outcome(tail), proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--all", action="store_true", help="every test of test_commands.py")
    parser.add_argument("--sdist", type=Path, help="a folder holding redis-<version>.tar.gz")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--json", type=Path, help="write the outcome here")
    opts = parser.parse_args()
    version = importlib.metadata.version("redis")
    work = Path(tempfile.mkdtemp(prefix="lowtide-redis-py-compat-"))
    try:
        tarball = (
            next(opts.sdist.glob(f"redis-{version}.tar.gz"))
            if opts.sdist
            else fetch_sdist(version, work)
        )
        with tarfile.open(tarball) as tar:
            tar.extractall(work, filter="data")
        root = work / f"redis-{version}"
        shutil.rmtree(root / "redis")  # import the installed redis-py, the one lowtide subclasses
        tests = root / "tests"
        baseline_conftest = (tests / "test_asyncio" / "conftest.py").read_text()
        selected = selection(opts.all)
        with ValkeyServer() as server:
            plain, plain_report = run(tests, server.url, selected, None)
            (tests / "test_asyncio" / "conftest.py").write_text(baseline_conftest + SHIM)
            stats_file = work / "stats.json"
            dropin, report = run(tests, server.url, selected, stats_file)
        stats = json.loads(stats_file.read_text()) if stats_file.exists() else {}
        failed, plain_failed = failures(report), failures(plain_report)
        result = {
            "redis_py": version,
            "selection": "all of test_commands.py" if opts.all else "tests of cached commands",
            "plain_redis_py": plain,
            "drop_in": dropin,
            "reads_answered_twice": stats.get("reads_twice", 0),
            "second_answer_from_process_memory": stats.get("served_from_l1", 0),
            "held_answer_differed": stats.get("mismatches", 0),
            "failed_only_with_drop_in": sorted(set(failed) - set(plain_failed)),
            "failed_only_with_plain_redis_py": sorted(set(plain_failed) - set(failed)),
            "failed_with_both": sorted(set(failed) & set(plain_failed)),
        }
        print(json.dumps(result, indent=2))
        if opts.json:
            opts.json.write_text(json.dumps(result, indent=2) + "\n")
        return 0 if dropin.get("passed", 0) and not stats.get("mismatches") else 1
    finally:
        if opts.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
