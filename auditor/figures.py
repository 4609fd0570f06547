"""Figures of the report, drawn with matplotlib into self-contained SVG text.

The output is deterministic for the same input (no dates in the metadata, fixed ids), so
a regenerated report hashes the same.
"""

from __future__ import annotations

__all__ = ["TimelinePoint", "timeline_figure", "timeline_svg"]

import io
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


@dataclass(frozen=True)
class TimelinePoint:
    at: datetime
    p_value: float | None = None
    e_value: float | None = None
    effect: float | None = None
    effect_low: float | None = None
    effect_high: float | None = None


def _neglog10(p: float | None) -> float | None:
    if p is None or not math.isfinite(p):
        return None
    return -math.log10(max(p, 1e-300))


_STYLE: dict[str, Any] = {
    "svg.hashsalt": "canary-auditor",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 8.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
}


def timeline_svg(points: list[TimelinePoint], alpha: float = 0.05) -> str:
    """The timeline figure as SVG text."""
    with plt.rc_context(_STYLE):  # type: ignore[arg-type]
        fig = timeline_figure(points, alpha)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
        plt.close(fig)
    return buf.getvalue()


def _legend_above(ax: Any) -> None:
    """The legend in one row above the panel, where it cannot cover a line or band."""
    ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.01), ncol=3, frameon=False,
              fontsize=7.5, borderaxespad=0.0, handlelength=2.2)


def _date_format(xs: list[datetime]) -> str:
    """Every tick a calendar date, with the time of day as fine as the span needs."""
    span = (max(xs) - min(xs)).total_seconds() if xs else 0.0
    if span >= 3 * 86400:
        return "%Y-%m-%d"
    return "%Y-%m-%d\n%H:%M" if span >= 3600 else "%Y-%m-%d\n%H:%M:%S"


def timeline_figure(points: list[TimelinePoint], alpha: float = 0.05) -> Figure:
    """Two stacked panels over time: the evidence against independence (-log10 p, and
    log10 e-value when there is one), and the effect size with its interval."""
    points = sorted(points, key=lambda p: p.at)
    with plt.rc_context(_STYLE):  # type: ignore[arg-type]
        fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(6.5, 4.2), sharex=True,
                                       gridspec_kw={"hspace": 0.42})
        xs = [p.at for p in points]
        lp = [_neglog10(p.p_value) for p in points]
        ax1.plot([x for x, y in zip(xs, lp, strict=True) if y is not None],
                 [y for y in lp if y is not None], marker="o", ms=3.5, lw=1.4,
                 color="#1f3a5f", label="−log10 p-value (fixed-sample test)")
        ev = [(x, math.log10(p.e_value)) for x, p in zip(xs, points, strict=True)
              if p.e_value is not None and p.e_value > 0]
        if ev:
            ax1.plot([x for x, _ in ev], [y for _, y in ev], marker="s", ms=3, lw=1.2,
                     ls="--", color="#8a5a00", label="log10 e-value (monitoring)")
        ax1.axhline(-math.log10(alpha), color="#9b1c1c", lw=0.9, ls=":",
                    label=f"threshold α = {alpha:g}")
        ax1.set_ylabel("evidence")
        _legend_above(ax1)
        ax1.grid(axis="y", color="#dddddd", lw=0.5)

        eff = [(x, p) for x, p in zip(xs, points, strict=True) if p.effect is not None]
        if eff:
            ex = [x for x, _ in eff]
            ax2.plot(ex, [p.effect for _, p in eff], marker="o", ms=3.5, lw=1.4,
                     color="#1f3a5f", label="effect size (similarity gap)")
            band = [(x, p) for x, p in eff
                    if p.effect_low is not None and p.effect_high is not None]
            if band:
                ax2.fill_between([x for x, _ in band], [p.effect_low for _, p in band],
                                 [p.effect_high for _, p in band], color="#1f3a5f", alpha=0.15,
                                 lw=0, label="95% interval")
        ax2.axhline(0.0, color="#555555", lw=0.8)
        ax2.set_ylabel("effect")
        _legend_above(ax2)
        ax2.grid(axis="y", color="#dddddd", lw=0.5)
        locator = mdates.AutoDateLocator(minticks=2, maxticks=6, tz=UTC)
        ax2.xaxis.set_major_locator(locator)
        ax2.xaxis.set_major_formatter(mdates.DateFormatter(_date_format(xs), tz=UTC))
        ax2.set_xlabel("time of analysis (UTC)")
        fig.align_ylabels()
    return fig
