"""The filter stage's report page: `report.md` with the funnel, reasons per domain, examples and lengths, and two
SVG bar charts drawn here (no plotting dependency): `funnel.svg` and `lengths.svg`."""

from __future__ import annotations

import json
import re
from html import escape
from pathlib import Path
from typing import Any

import numpy as np

from r1distill.core.store import atomic_write_text


def length_summary(values: list[int]) -> dict[str, float]:
    """Summary of a length distribution (percentiles rounded to whole characters)."""
    if not values:
        return {"n": 0}
    a = np.asarray(values)
    q = np.percentile(a, [10, 50, 90, 99])
    return {"n": int(a.size), "mean": round(float(a.mean()), 1), "p10": round(float(q[0])), "p50": round(float(q[1])),
            "p90": round(float(q[2])), "p99": round(float(q[3])), "max": int(a.max())}  # fmt: skip


def _svg_bars(title: str, rows: list[tuple[str, float, str]], fmt: str = "{:,.0f}") -> str:
    """A horizontal bar chart as standalone SVG (no plotting dependency): (label, value, colour) per row."""
    width, label_w, bar_w, row_h = 720, 230, 380, 22
    top = max((v for _, v, _ in rows), default=1) or 1
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{40 + row_h * len(rows)}" '
        'font-family="sans-serif" font-size="12">',
        f'<text x="8" y="20" font-size="14" font-weight="bold">{_esc(title)}</text>',
    ]
    for i, (label, value, colour) in enumerate(rows):
        y = 32 + i * row_h
        w = max(1.0, bar_w * value / top)
        parts.append(f'<text x="{label_w - 6}" y="{y + 14}" text-anchor="end">{_esc(label)}</text>')
        parts.append(f'<rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="{row_h - 6}" fill="{colour}"/>')
        parts.append(f'<text x="{label_w + w + 6:.1f}" y="{y + 14}">{fmt.format(value)}</text>')
    return "\n".join(parts + ["</svg>", ""])


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _histogram(len_in: list[int], len_kept: list[int], bins: int = 12) -> list[tuple[str, float, str]]:
    """Rows for a before/after bar chart over quantile bins of the input lengths."""
    if not len_in:
        return []
    edges = np.unique(np.quantile(np.asarray(len_in), np.linspace(0, 1, bins + 1)).round())
    if len(edges) < 2:
        edges = np.array([edges[0], edges[0] + 1])
    n_in, _ = np.histogram(len_in, bins=edges)
    n_kept, _ = np.histogram(len_kept, bins=edges) if len_kept else (np.zeros(len(edges) - 1, int), None)
    rows = []
    for lo, hi, a, k in zip(edges[:-1], edges[1:], n_in, n_kept, strict=True):
        rows += [(f"{lo:,.0f}-{hi:,.0f} in", int(a), "#9ab"), ("kept", int(k), "#2a7")]
    return rows


_MD_SPECIAL = re.compile(r"([\\`*_\[\]#|~])")


def _md(text: str) -> str:
    """Text shown literally in markdown: HTML and markdown syntax escaped, line breaks as ⏎."""
    return _MD_SPECIAL.sub(r"\\\1", escape(text, quote=False)).replace("\n", " ⏎ ")


def evidence_lines(evidence: dict[str, list[dict[str, Any]]], counts: dict[str, int]) -> list[str]:
    """Markdown for the evidence of up to 3 drops per reason: the excerpt highlighted in its context."""
    if not evidence:
        return []
    lines = ["", "## Why: evidence of the first drops per reason", ""]
    for reason, items in evidence.items():
        lines += [f"### {reason} ({len(items)} of {counts.get(reason, len(items))})", ""]
        for ev in items:
            where = f"{ev.get('part') or 'text'} @ {ev.get('offset', 0)}"
            extra = {k: ev[k] for k in ("unit", "count", "duplicate_of", "sentence") if ev.get(k) is not None}
            rule = json.dumps(ev.get("threshold"), ensure_ascii=False)
            shown = json.dumps(extra, ensure_ascii=False).replace("`", "'")
            lines.append(f"- `{ev['id']}` ({where}; threshold `{rule}`" + (f"; `{shown}`" if extra else "") + "):")
            lines.append(f"  > …{_md(ev.get('before', ''))}<mark>{_md(ev.get('excerpt', ''))}</mark>"
                         f"{_md(ev.get('after', ''))}…")  # fmt: skip
        lines.append("")
    return lines


def write_report(out_dir: Path, policy: str, report: dict[str, Any], len_in: list[int], len_kept: list[int]) -> None:
    """`report.md` (funnel, reasons per domain, examples, lengths) with `funnel.svg` and `lengths.svg` beside it."""
    funnel = report["funnel"]
    bars = [(f["step"], f.get("dropped", f.get("count", 0)), "#c44" if "dropped" in f else "#2a7") for f in funnel]
    atomic_write_text(out_dir / "funnel.svg", _svg_bars("filter funnel: samples dropped per reason", bars))
    atomic_write_text(
        out_dir / "lengths.svg", _svg_bars("completion length (chars): in vs kept", _histogram(len_in, len_kept))
    )
    n_in = funnel[0]["count"] or 1
    lines = [
        f"# Filter report ({policy})",
        "",
        "![funnel](funnel.svg)",
        "",
        "| step | check | dropped | remaining | share of input |",
        "|---|---|---:|---:|---:|",
    ]
    for f in funnel:
        dropped = f.get("dropped", "")
        share = f"{100 * f['dropped'] / n_in:.1f}%" if "dropped" in f else f"{100 * f['remaining'] / n_in:.1f}%"
        lines.append(f"| {f['step']} | {f.get('check', '')} | {dropped} | {f['remaining']} | {share} |")
    reasons = list(report["reasons"])
    lines += [
        "",
        "## Per domain",
        "",
        "| domain | in | " + " | ".join(reasons) + " | kept |",
        "|---" * (len(reasons) + 3) + "|",
    ]
    for domain, counts in report["domains"].items():
        cells = [str(counts.get(r, 0)) for r in ["in", *reasons, "kept"]]
        lines.append(f"| {domain} | " + " | ".join(cells) + " |")
    lines += ["", "## Examples (look under rejected/<reason>/)", ""]
    lines += [f"- **{r}**: " + ", ".join(f"`{i}`" for i in ids) for r, ids in report["examples"].items()]
    lines += evidence_lines(report.get("evidence") or {}, report.get("reasons") or {})
    lines += ["", "## Completion length", "", "![lengths](lengths.svg)", ""]
    lines += ["| | unit | n | mean | p10 | p50 | p90 | p99 | max |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for unit, key in (("chars", "completion_chars"), ("teacher tokens", "completion_tokens")):
        for name in ("in", "kept"):
            d = report["lengths"][key][name]
            if d.get("n"):
                cells = " | ".join(str(d.get(k, "")) for k in ("n", "mean", "p10", "p50", "p90", "p99", "max"))
                lines.append(f"| {name} | {unit} | {cells} |")
    atomic_write_text(out_dir / "report.md", "\n".join(lines) + "\n")
