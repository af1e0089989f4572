"""Every snippet of docs/observability.md runs as written (the FastAPI page's app runs in
test_fastapi_app.py and test_multiworker.py), and every metric its PromQL recipes name is one
the collector exports."""

from __future__ import annotations

import re
from typing import Any

import pytest
from opentelemetry.instrumentation.redis import RedisInstrumentor
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from lowtide import Lowtide
from lowtide.context import Attribution
from lowtide.integrations.otel import LowtideMetrics
from lowtide.integrations.prometheus import LowtideCollector, collectors
from tests.integrations.helpers import blocks

PAGE = "observability.md"


def snippet(start: str) -> str:
    (found,) = [b for b in blocks(PAGE) if b.startswith(start)]
    return found


def test_every_python_block_is_tested() -> None:
    starts = ("snap = lt.ledger", "from prometheus_client import REGISTRY", "from opentelemetry")
    assert all(b.startswith(starts) for b in blocks(PAGE))


async def test_the_in_process_snippet() -> None:
    lt = Lowtide(None)
    lt.ledger.record([("get", Attribution("cache", "lt:c:p:*", "t1"))])
    scope = {"lt": lt}
    exec(snippet("snap = lt.ledger"), scope)
    assert scope["snap"].total == 1


async def test_the_prometheus_snippet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOWTIDE_REDIS_URL", raising=False)
    scope: dict[str, object] = {}
    exec(snippet("from prometheus_client import REGISTRY"), scope)
    collector = scope["collector"]
    assert isinstance(collector, LowtideCollector)
    try:
        text = generate_latest(REGISTRY).decode()
        assert 'lowtide_limiter_limit{limiter="search"} 100.0' in text
        assert 'lowtide_breaker_open_tenants{breaker="payments"} 0.0' in text
    finally:
        await collector.aclose()
    lt = scope["lt"]
    assert isinstance(lt, Lowtide)
    assert not collectors(lt)


def test_the_promql_recipes_name_exported_metrics() -> None:
    lt = Lowtide(None)
    registry = CollectorRegistry()
    lt.ledger.record([("get", Attribution("cache", "lt:c:p:*", "t1"))])
    LowtideCollector(
        lt, limiters=[lt.rate_limiter("l", 1, 1)], breakers=[lt.circuit_breaker("b")]
    ).register(registry)
    text = generate_latest(registry).decode()
    exported = set(re.findall(r"^(lowtide_\w+)", text, re.M))
    for name, kind in re.findall(r"^# TYPE (lowtide_\w+) (\w+)", text, re.M):
        exported |= {name} | ({f"{name}_bucket", f"{name}_count"} if kind == "histogram" else set())
    (promql,) = blocks(PAGE, "promql")
    named = set(re.findall(r"\b(lowtide_\w+)", promql))
    assert named
    assert named <= exported, named - exported


async def test_the_opentelemetry_snippet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LOWTIDE_REDIS_URL", raising=False)
    scope: dict[str, Any] = {}
    try:
        exec(snippet("from opentelemetry"), scope)
    finally:
        RedisInstrumentor().uninstrument()
    assert isinstance(scope["metrics"], LowtideMetrics)
    scope["metrics"].close()
    scope["meter_provider"].shutdown()
