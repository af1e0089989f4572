"""The demo's chart: Redis commands per minute, per strategy, as the server counted them.

The incident's dashboard showed a flat line at ~1,525 GETs/min; the chart shows that line for
the naive strategy, where the incident team's TTL fix brings it, and where lowtide does, one
after the other on one time axis (needs matplotlib: the ``chart`` extra, or ``demo`` for
everything).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lowtide.demo.runner import DemoResult

__all__ = ["write_chart"]

COLOURS = {"naive": "#d62728", "ttl-fix": "#ff7f0e", "lowtide": "#1f77b4"}


def _smooth(values: list[float], width: int = 5) -> list[float]:
    """Trailing moving average (the server is read once a second; single seconds are noisy)."""
    out = []
    for i in range(len(values)):
        window = values[max(0, i - width + 1) : i + 1]
        out.append(sum(window) / len(window))
    return out


def write_chart(result: DemoResult, path: Path) -> Path:
    """Draw the PNG to ``path`` and return it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5), dpi=120)
    for name, r in result.strategies.items():
        if not r.series:
            continue
        xs = [p[0] for p in r.series]
        total = _smooth([p[1] for p in r.series])
        gets = _smooth([p[2] for p in r.series])
        colour = COLOURS.get(name, "#555555")
        ax.step(xs, total, where="pre", color=colour, linewidth=2, label=f"{name}: all commands")
        ax.step(
            xs, gets, where="pre", color=colour, linewidth=1, linestyle="--", label=f"{name}: GETs"
        )
        mid = xs[len(xs) // 2]
        ax.annotate(
            f"{name}\n{r.billed_per_day / 1e6:.2f}M billed/day",
            (mid, max(total) if total else 0),
            textcoords="offset points",
            xytext=(0, 8),
            ha="center",
            color=colour,
            fontsize=9,
        )
    model = result.config.naive_gets_per_min
    ax.axhline(model, color="#999999", linewidth=1, linestyle=":")
    ax.annotate(
        f"the incident's {model:,.0f} GETs/min",
        (0, model),
        textcoords="offset points",
        xytext=(4, 4),
        color="#777777",
        fontsize=8,
    )
    ax.set_xlabel("seconds (strategies run one after another on the same trace)")
    ax.set_ylabel("Redis commands per minute (server count, 5 s average)")
    ax.set_title(
        f"lowtide demo: {result.config.machines} machines, scale {result.config.scale:g}, "
        f"{result.config.seconds:g} s per strategy"
    )
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=3, loc="upper right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
