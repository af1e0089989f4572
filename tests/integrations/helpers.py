"""Helpers for the integration tests: docs blocks, an in-process uvicorn, metrics parsing."""

from __future__ import annotations

import asyncio
import re
import types
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from lowtide.testing import free_port
from tests.helpers import eventually

DOCS = Path(__file__).resolve().parents[2] / "docs"


def blocks(page: str, lang: str = "python") -> list[str]:
    """The ``lang`` code blocks of ``docs/<page>``, in order."""
    return re.findall(rf"```{lang}\n(.*?)```", (DOCS / page).read_text(), re.S)


def docs_app_source() -> str:
    """The complete app of docs/fastapi.md, as written."""
    (source,) = [b for b in blocks("fastapi.md") if b.startswith('"""app.py')]
    return source


def load_module(name: str, source: str, filename: str) -> types.ModuleType:
    """``source`` executed as a fresh module ``name``."""
    module = types.ModuleType(name)
    module.__file__ = filename
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """``app`` under uvicorn on a free local port, lifespan on; yields its base URL."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started or task.done(), within=20)
    if task.done():
        task.result()
        raise AssertionError("uvicorn stopped at start-up")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a Prometheus text exposition: (name, sorted labels) -> value."""
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(samples: Samples, name: str, **match: str) -> float:
    """The sum of ``name``'s samples whose labels include ``match``."""
    return sum(
        v
        for (n, labels), v in samples.items()
        if n == name and all((k, val) in labels for k, val in match.items())
    )


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    """``name``'s samples summed by one label."""
    out: dict[str, float] = {}
    for (n, labels), v in samples.items():
        if n == name:
            key = dict(labels)[label]
            out[key] = out.get(key, 0.0) + v
    return out
