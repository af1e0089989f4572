"""The demo's chart: billed Redis commands per minute, per run, as the server counted them.

The incident's dashboard showed a flat line at ~1,525 GETs/min; the chart shows the measured
window of each run one after the other on one axis of trace time (the warm-up is not drawn:
it starts from an empty cache, so its first minutes are a transient nobody pays in steady
state), with the $/month each rate costs on the right-hand axis. Labels sit in their own band
above the lines and in the legend, so no line crosses them (needs matplotlib: the ``chart``
extra, or ``demo`` for everything).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from lowtide.demo.analysis import UPSTASH

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from lowtide.demo.runner import DemoResult

__all__ = ["draw_chart", "measured_points", "write_chart"]

COLOURS = {
    "naive": "#d62728",
    "ttl-fix": "#ff7f0e",
    "dropin": "#9467bd",
    "lowtide/tracking": "#1f77b4",
    "lowtide/keyspace": "#17becf",
    "lowtide/pubsub": "#2ca02c",
}
NAMES = {
    "dropin": "naive code on lt.redis()",
    "lowtide/tracking": "lowtide, tracking",
    "lowtide/keyspace": "lowtide, keyspace",
    "lowtide/pubsub": "lowtide, pub/sub",
}


def _smooth(values: list[float], width: int = 5) -> list[float]:
    """Trailing moving average within one run (single readings are noisy)."""
    out = []
    for i in range(len(values)):
        window = values[max(0, i - width + 1) : i + 1]
        out.append(sum(window) / len(window))
    return out


def measured_points(
    series: list[tuple[float, float, float]], warmup: float
) -> list[tuple[float, float, float]]:
    """The readings of the measured window, with time counted from its start."""
    return [(t - warmup, billed, gets) for t, billed, gets in series if t > warmup]


def draw_chart(result: DemoResult) -> Figure:
    """The chart as a matplotlib figure (on an Agg canvas; no pyplot, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cfg = result.config
    usd_per_min = 1440 * 30 * UPSTASH.usd_per_100k / 100_000  # $/month of 1 billed/min
    fig = Figure(figsize=(10, 5.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    offset = 0.0
    peak = cfg.naive_gets_per_min
    labels: list[tuple[float, str, str]] = []
    for name, r in result.strategies.items():
        points = measured_points(r.series, cfg.warmup)
        if not points:
            continue
        xs = [offset + p[0] for p in points]
        billed = _smooth([p[1] for p in points])
        gets = _smooth([p[2] for p in points])
        colour = COLOURS.get(name, "#555555")
        label = NAMES.get(name, name)
        ax.plot(xs, billed, color=colour, linewidth=2, label=f"{label}: billed commands")
        ax.plot(xs, gets, color=colour, linewidth=1, linestyle="--", label=f"{label}: GETs")
        peak = max(peak, *billed)
        text = f"{label}\n{r.billed_per_day / 1e6:.2f}M billed/day\n${r.usd_per_month:,.2f}/month"
        if r.bound_ratio is not None:
            text += f"\n{r.bound_ratio:.2f}x its bound"
        labels.append((offset + cfg.seconds / 2, text, colour))
        offset += cfg.seconds
        ax.axvline(offset, color="#cccccc", linewidth=1)
    top = peak * 1.5  # the band above the lines holds the labels
    for x, text, colour in labels:
        ax.text(x, peak * 1.08, text, ha="center", va="bottom", color=colour, fontsize=8, zorder=5)
    model = cfg.naive_gets_per_min
    ax.axhline(
        model,
        color="#999999",
        linewidth=1,
        linestyle=":",
        label=f"the incident's {model:,.0f} GETs/min",
    )
    ax.set_xlim(0, max(offset, 1.0))
    ax.set_ylim(0, top)
    ax.set_xlabel(
        "seconds of trace, measured window of each run (after its warm-up), one after another"
    )
    ax.set_ylabel("per minute of trace (server count, 5-reading average)")

    def to_usd(per_min: Any) -> Any:
        return per_min * usd_per_min

    def from_usd(usd: Any) -> Any:
        return usd / usd_per_min

    dollars = ax.secondary_yaxis("right", functions=(to_usd, from_usd))
    dollars.set_ylabel("$/month at this rate (Upstash pay-as-you-go)")
    compressed = f", time compressed {cfg.time_scale:g}x" if cfg.time_scale != 1 else ""
    ax.set_title(
        f"lowtide demo: {cfg.machines} machines, scale {cfg.scale:g}, "
        f"{cfg.seconds:g} s measured per run{compressed}",
        pad=12,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False)
    fig.tight_layout()
    return fig


def write_chart(result: DemoResult, path: Path) -> Path:
    """Draw the PNG to ``path`` and return it."""
    fig = draw_chart(result)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
