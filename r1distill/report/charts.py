"""The PNG charts of `r1distill report`: matplotlib with the Agg backend (no display), one function per chart.

Each function draws one figure into `path` and returns it; the report links them by file name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

KEPT, DROPPED, OURS, PUBLISHED = "#2f7d4f", "#c8553d", "#3465a4", "#9aa5b1"
DELTA = "#75507b"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 10, "axes.spines.top": False, "axes.spines.right": False})
    return plt


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def funnel(steps: Sequence[dict[str, Any]], path: Path) -> Path:
    """Horizontal bars, top to bottom: what remains after each step (green) and what the step dropped (red)."""
    plt = _pyplot()
    labels = [s["label"] for s in steps]
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(steps) + 1.2))
    y = list(range(len(steps)))[::-1]
    remaining = [s["remaining"] for s in steps]
    dropped = [s.get("dropped", 0) for s in steps]
    ax.barh(y, remaining, color=KEPT, label="remaining")
    ax.barh(y, dropped, left=remaining, color=DROPPED, label="dropped here")
    top = max((r + d for r, d in zip(remaining, dropped, strict=True)), default=1) or 1
    for yi, r, d in zip(y, remaining, dropped, strict=True):
        ax.text(r + d + top * 0.01, yi, f"{r:,}" + (f"  (-{d:,})" if d else ""), va="center", fontsize=9)
    ax.set_yticks(y, labels)
    ax.set_xlim(0, top * 1.25)
    ax.set_xlabel("samples")
    ax.legend(loc="lower right", frameon=False)
    return _save(fig, path)


def histogram(series: dict[str, Sequence[float]], path: Path, xlabel: str, bins: int = 30) -> Path:
    """Overlaid histograms of one quantity for several groups (e.g. train and validation rows)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    values = [v for vs in series.values() for v in vs]
    lo, hi = (min(values), max(values)) if values else (0, 1)
    edges = [lo + (hi - lo or 1) * i / bins for i in range(bins + 1)]
    for (name, vs), color in zip(series.items(), (OURS, "#e08e0b", KEPT), strict=False):
        ax.hist(list(vs), bins=edges, alpha=0.75, color=color, label=f"{name} (n={len(vs):,})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rows")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.legend(frameon=False)
    return _save(fig, path)


def binned(edges: Sequence[float], counts: Sequence[int], path: Path, xlabel: str) -> Path:
    """A histogram already binned elsewhere (a manifest's edges and counts)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    widths = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
    ax.bar(edges[:-1], counts, width=widths, align="edge", color=OURS, edgecolor="white")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("rows")
    return _save(fig, path)


def curves(series: dict[str, tuple[Sequence[float], Sequence[float]]], path: Path, ylabel: str) -> Path:
    """Lines over training steps, e.g. {"train loss": (steps, values), "eval loss": (...)}."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for (name, (xs, ys)), color in zip(series.items(), (OURS, "#e08e0b", KEPT, DROPPED), strict=False):
        ax.plot(xs, ys, marker="o" if len(xs) <= 30 else None, markersize=3, color=color, label=name)
    ax.set_xlabel("step")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(ylabel)
    ax.legend(frameon=False)
    return _save(fig, path)


def scores(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Grouped bars per benchmark: each evaluated model's pass@1 (with its 95% CI) and the published number."""
    plt = _pyplot()
    names = [r["benchmark"] for r in rows]
    seen = dict.fromkeys(k for r in rows for k in r["values"])  # the evaluated model first, as the page lists them
    groups = sorted(seen, key=lambda k: k == "published")
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(names) + 2), 3.6))
    width = min(0.8 / max(len(groups), 1), 0.35)
    palette = iter((OURS, "#e08e0b", KEPT, "#75507b"))
    for i, group in enumerate(groups):
        color = PUBLISHED if group == "published" else next(palette, OURS)
        xs = [j + i * width for j in range(len(names))]
        vals = [r["values"].get(group) for r in rows]
        errs = [r.get("ci", {}).get(group) for r in rows]
        heights = [v if v is not None else 0 for v in vals]
        yerr = [[h - e[0] if e else 0 for h, e in zip(heights, errs, strict=True)],
                [e[1] - h if e else 0 for h, e in zip(heights, errs, strict=True)]]  # fmt: skip
        ax.bar(xs, heights, width=width, color=color, label=group, yerr=yerr, capsize=3)
        for x, v, e in zip(xs, vals, errs, strict=True):
            top = max(v or 0, e[1] if e else 0)
            ax.text(x, top + 1.5, "n/a" if v is None else f"{v:.1f}", ha="center", fontsize=8)
    ax.set_xlim(-0.6, len(names) - 0.4 + width * (len(groups) - 1))
    ax.set_xticks([j + width * (len(groups) - 1) / 2 for j in range(len(names))], names)
    ax.set_ylabel("pass@1 (%)")
    ax.set_ylim(0, 105)
    ax.legend(frameon=False, fontsize=8)
    return _save(fig, path)


def deltas(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """A forest plot: one line per (benchmark, baseline), the paired Δ pass@1 (points) as a dot with its 95% CI as a
    bar, and a line at zero (no difference)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 0.5 * len(rows) + 1.3))
    y = list(range(len(rows)))[::-1]
    for yi, r in zip(y, rows, strict=True):
        low, high = r["ci"] if r.get("ci") else (r["delta"], r["delta"])
        ax.plot([low, high], [yi, yi], color=DELTA, linewidth=3, solid_capstyle="butt")
        ax.plot([r["delta"]], [yi], "o", color=DELTA, markersize=7)
        ax.text(high, yi + 0.18, f" {r['delta']:+.1f}", fontsize=8, va="bottom")
    ax.axvline(0, color=PUBLISHED, linewidth=1, linestyle="--")
    ax.set_yticks(y, [r["label"] for r in rows])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    span = max([abs(v) for r in rows for v in (r["ci"] or (r["delta"],))] + [1.0])
    ax.set_xlim(-1.15 * span, 1.15 * span)
    ax.set_xlabel("Δ pass@1 (points), paired 95% CI")
    return _save(fig, path)
