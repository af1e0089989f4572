"""A breaker shared by every tenant stacked over the per-tenant one (docs/breaker.md, "When the
dependency fails for every tenant"): a dependency down for everyone is refused fleet-wide even
though no tenant calls it often enough to open its own breaker; one tenant failing alone opens
only its own."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from lowtide import CircuitBreaker, CircuitOpen, Lowtide

DOCS = Path(__file__).resolve().parent.parent / "docs"


class Down(Exception):
    """The dependency's answer while it is down."""


class Dependency:
    def __init__(self) -> None:
        self.calls = 0
        self.down = False

    async def __call__(self) -> None:
        self.calls += 1
        if self.down:
            raise Down("503")


def stacked(hub: Lowtide) -> tuple[CircuitBreaker, CircuitBreaker]:
    everyone = hub.circuit_breaker("dep-all", per_tenant=False, min_calls=20, window=60.0)
    per_tenant = hub.circuit_breaker("dep", min_calls=5, window=60.0)
    return everyone, per_tenant


async def call(
    everyone: CircuitBreaker | None, per_tenant: CircuitBreaker, tenant: str, dep: Dependency
) -> str:
    """What became of one call: ``ok``, ``failed`` or ``refused``."""
    try:
        if everyone is None:
            async with per_tenant.guard(tenant):
                await dep()
        else:
            async with everyone.guard(), per_tenant.guard(tenant):
                await dep()
    except Down:
        return "failed"
    except CircuitOpen:
        return "refused"
    return "ok"


def snippet() -> str:
    text = (DOCS / "breaker.md").read_text()
    start = text.index("## When the dependency fails for every tenant")
    section = text[start : text.index("\n## ", start + 10)]
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    return str(code)


async def test_the_docs_snippet_runs_as_written(lowtide_url: str) -> None:
    dep = Dependency()
    scope: dict[str, object] = {}
    body = textwrap.indent(snippet(), "    ")
    exec(compile(f"async def run(lt, call_hubspot):\n{body}", "breaker.md", "exec"), scope)
    async with Lowtide(lowtide_url, instance="docs") as lt:
        await scope["run"](lt, dep)  # type: ignore[operator]
        assert dep.calls == 1
        assert lt.circuit_breaker("hubspot-all", per_tenant=False, min_calls=20).stats["calls"] == 1
        assert lt.circuit_breaker("hubspot", min_calls=5).stats["calls"] == 1


async def test_a_dependency_down_for_everyone_is_refused_fleet_wide(lowtide_url: str) -> None:
    async with (
        Lowtide(lowtide_url, instance="a") as a,
        Lowtide(lowtide_url, instance="b") as b,
    ):
        assert await a.invalidations.wait_healthy(5)
        assert await b.invalidations.wait_healthy(5)
        (all_a, per_a), (all_b, per_b) = stacked(a), stacked(b)
        dep = Dependency()
        dep.down = True
        # 10 tenants call it twice each on machine a: none reaches its own min_calls (5)
        outcomes = [await call(all_a, per_a, f"t{i}", dep) for i in range(10) for _ in range(2)]
        assert outcomes == ["failed"] * 20
        assert {per_a.state(f"t{i}") for i in range(10)} == {"closed"}
        assert all_a.state() == "open"  # 20 failures in total
        # machine b has never called it: its first call reads the fleet's state (1 GET)
        # 40 tenants, on both machines, none of which ever failed: refused without a call
        later = [
            await call(e, p, f"u{i}", dep)
            for i in range(20)
            for e, p in ((all_a, per_a), (all_b, per_b))
        ]
        assert later == ["refused"] * 40
        assert dep.calls == 20
        assert all_a.info()["trips"] + all_b.info()["trips"] == 1


async def test_without_the_shared_breaker_every_call_reaches_a_dead_dependency(
    lowtide_url: str,
) -> None:
    async with Lowtide(lowtide_url, instance="alone") as lt:
        _, per_tenant = stacked(lt)
        dep = Dependency()
        dep.down = True
        outcomes = [await call(None, per_tenant, f"t{i}", dep) for i in range(30) for _ in range(2)]
        assert outcomes == ["failed"] * 60  # what the shared breaker saves: 40 of these
        assert dep.calls == 60


@pytest.mark.parametrize("failing_first", [True, False])
async def test_one_tenant_failing_alone_opens_only_its_own_breaker(
    lowtide_url: str, failing_first: bool
) -> None:
    async with Lowtide(lowtide_url, instance="one") as lt:
        everyone, per_tenant = stacked(lt)
        good, bad = Dependency(), Dependency()
        bad.down = True
        healthy = [(f"t{i}", good) for i in range(19) for _ in range(3)]
        failing = [("broken", bad)] * 8
        plan = failing + healthy if failing_first else healthy + failing
        outcomes = [await call(everyone, per_tenant, t, dep) for t, dep in plan]
        assert outcomes.count("ok") == 57
        assert outcomes.count("failed") == 5  # then its own breaker opened
        assert outcomes.count("refused") == 3
        assert per_tenant.state("broken") == "open"
        assert everyone.state() == "closed"  # 5 failures in 62 calls
        assert {per_tenant.state(f"t{i}") for i in range(19)} == {"closed"}
        assert everyone.stats["not_called"] == 3  # the inner refusals count for nothing
