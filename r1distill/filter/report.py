"""The filter stage's report page: `report.md` with the funnel, reasons per domain, examples and lengths, and two
charts beside it, drawn by the run report's matplotlib charts (`r1distill.report.charts`): funnel.png, lengths.png."""

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
    """`report.md` (funnel, reasons per domain, examples, lengths) with `funnel.png` and `lengths.png` beside it."""
    from r1distill.report import charts

    funnel = report["funnel"]
    charts.funnel([{**f, "label": f["step"]} for f in funnel], out_dir / "funnel.png")
    charts.histogram({"in": len_in, "kept": len_kept}, out_dir / "lengths.png", "completion length (chars)")
    n_in = funnel[0]["count"] or 1
    lines = [
        f"# Filter report ({policy})",
        "",
        "![funnel](funnel.png)",
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
    lines += ["", "## Completion length", "", "![lengths](lengths.png)", ""]
    lines += ["| | unit | n | mean | p10 | p50 | p90 | p99 | max |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for unit, key in (("chars", "completion_chars"), ("teacher tokens", "completion_tokens")):
        for name in ("in", "kept"):
            d = report["lengths"][key][name]
            if d.get("n"):
                cells = " | ".join(str(d.get(k, "")) for k in ("n", "mean", "p10", "p50", "p90", "p99", "max"))
                lines.append(f"| {name} | {unit} | {cells} |")
    atomic_write_text(out_dir / "report.md", "\n".join(lines) + "\n")
