"""``lowtide suspend`` and ``lowtide resume``: the fleet-wide kill switch (see lowtide.control)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from lowtide import Lowtide, LowtideError
from lowtide.cli.app import (
    NamespaceOption,
    UrlOption,
    app,
    fail,
    say,
    settings_with_url,
    unreachable,
)
from lowtide.control import write_switch

__all__ = ["resume", "suspend"]


def _switch(
    ctx: typer.Context, url: str | None, namespace: str, *, suspend: bool, reason: str
) -> None:
    # a tool's own hub: never suspended itself, no listener, nothing published
    settings = settings_with_url(
        ctx,
        url,
        namespace=namespace,
        instance="lowtide-switch",
        suspend=False,
        fleet_switch=False,
        fleet_view=False,
        track_metrics=False,
    )

    async def run() -> None:
        async with Lowtide(settings=settings) as hub:
            if not hub.distributed:
                raise unreachable(hub)
            await write_switch(hub, suspend=suspend, reason=reason)

    try:
        asyncio.run(run())
    except (ConnectionError, LowtideError) as exc:
        fail(exc)
    word = "suspended" if suspend else "resumed"
    say(f"fleet {word} (namespace {namespace!r}); every hub switches on the push")


@app.command()
def suspend(
    ctx: typer.Context,
    url: UrlOption = None,
    namespace: NamespaceOption = "lt",
    reason: Annotated[str, typer.Option(help="shown in every hub's health")] = "",
) -> None:
    """Fleet-wide kill switch: every hub stops using Redis (and keeps working locally)."""
    _switch(ctx, url, namespace, suspend=True, reason=reason)


@app.command()
def resume(ctx: typer.Context, url: UrlOption = None, namespace: NamespaceOption = "lt") -> None:
    """Undo lowtide suspend: every hub goes back to Redis."""
    _switch(ctx, url, namespace, suspend=False, reason="")
