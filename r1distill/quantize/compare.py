"""The quantized student beside the full one, from what evaluate and quantize left: size on disk, generation tok/s on
the same engine, and the paired Δ pass@1 with its 95% CI, per benchmark.

    python -m r1distill.quantize.compare RUN_DIR        # the comparison as JSON (the report page shows it as a table)

The quantized model is the evaluate baseline whose folder is a finished quantize stage. Tok/s is evaluate's own
measure of each model's sampling run (output tokens / wall time of the generate call, the engine already started,
same problems, n and sampling for both); a model whose samples were all reused from an earlier run has none. Δ is
quantized minus full over the problems both were graded on, with evaluate's paired t interval (the problems'
difficulty cancels, so it is tighter than the two pass@1 intervals suggest).
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from html import escape
from pathlib import Path
from typing import Any

from r1distill.core.store import read_manifest
from r1distill.evaluate import metrics
from r1distill.quantize.stage import folder_bytes


def _per_problem(scored: Path) -> dict[str, float]:
    """{problem row: its pass rate} from an evaluate `scored.jsonl`."""
    hits: dict[str, list[bool]] = defaultdict(list)
    if scored.exists():
        for line in scored.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            hits[rec["row"]].append(bool(rec["grade"]["correct"]))
    return {row: metrics.rate(v) for row, v in hits.items()}


def _tok_per_s(bench_dir: Path) -> float | None:
    last = (read_manifest(bench_dir / "samples") or {}).get("last_run") or {}
    return last.get("output_tok_per_s") if last.get("samples") else None


def paired_delta(full: dict[str, float], quant: dict[str, float]) -> dict[str, Any]:
    """Δ pass@1 (quantized - full) over the shared problems: evaluate's paired t interval (`metrics.paired_delta`;
    a t, not a normal, interval: benchmarks here are small), and the problem count."""
    d = metrics.paired_delta(quant, full, method="t")
    if not d["problems"]:
        return {"delta_pass@1": None, "delta_ci95": [None, None], "paired_problems": 0}
    return {"delta_pass@1": d["delta"], "delta_ci95": list(d["ci95"]), "paired_problems": d["problems"],
            "p_value": d["p_value"]}  # fmt: skip


def compare(run_dir: str | Path) -> dict[str, Any] | None:
    """The comparison, or None when the run has no evaluated quantize baseline."""
    run_dir = Path(run_dir)
    report_path = run_dir / "evaluate" / "report.json"
    if not report_path.exists():
        return None
    report = json.loads(report_path.read_text(encoding="utf-8"))
    label = next(
        (name for name, b in report.get("baselines", {}).items()
         if (read_manifest(Path(b.get("model", ""))) or {}).get("stage") == "quantize"),
        None,
    )  # fmt: skip
    if label is None:
        return None
    quant_ref = Path(report["baselines"][label]["model"])
    qm = read_manifest(quant_ref)
    full_ref = Path(report["model"])
    ev = run_dir / "evaluate"
    out: dict[str, Any] = {
        "full": {"label": report.get("label", "model"), "model": full_ref.name, "size_bytes": _size(full_ref)},
        "quantized": {
            "label": label,
            "model": quant_ref.name,
            "scheme": qm.get("scheme"),
            "size_bytes": _size(quant_ref),
        },
        "same_student": str(full_ref.resolve()) == str(Path(qm.get("model", "")).resolve()),
        "benchmarks": {},
    }
    for name, full_m in report["benchmarks"].items():
        quant_m = report["baselines"][label]["benchmarks"].get(name)
        if quant_m is None:
            continue
        full_dir, quant_dir = ev / name, ev / "baselines" / label / name
        out["benchmarks"][name] = {
            "full": {"pass@1": full_m["pass@1"], "tok_per_s": _tok_per_s(full_dir)},
            "quantized": {"pass@1": quant_m["pass@1"], "tok_per_s": _tok_per_s(quant_dir)},
            **paired_delta(_per_problem(full_dir / "scored.jsonl"), _per_problem(quant_dir / "scored.jsonl")),
        }
    return out


def _size(path: Path) -> int | None:
    return folder_bytes(path) if path.is_dir() else None


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.1f}"


def _num(x: float | None, scale: float = 1.0, digits: int = 1, sign: bool = False) -> str:
    return "-" if x is None else f"{scale * x:{'+' if sign else ''}.{digits}f}"


def section_html(run_dir: str | Path) -> str | None:
    """The report page's table (size, tok/s, pass@1 and Δ side by side), or None when there is nothing to compare."""
    c = compare(run_dir)
    if c is None:
        return None
    f, q = c["full"], c["quantized"]
    head = ["benchmark", "model", "size on disk MiB", "generation tok/s", "pass@1 %", "Δ pass@1 (95% CI)", "problems"]
    rows = []
    for name, b in c["benchmarks"].items():
        lo, hi = b["delta_ci95"]
        delta = f"{_num(b['delta_pass@1'], 100, sign=True)} ({_num(lo, 100, sign=True)} to {_num(hi, 100, sign=True)})"
        for who, m, d in ((f, b["full"], "-"), (q, b["quantized"], delta)):
            label = f"{who['label']} ({who['model']}" + (f", {q['scheme']})" if who is q else ")")
            cells = [name, label, _mib(who["size_bytes"]), _num(m["tok_per_s"]), _num(m["pass@1"], 100), d,
                     str(b["paired_problems"])]  # fmt: skip
            rows.append("<tr>" + "".join(f"<td>{escape(x)}</td>" for x in cells) + "</tr>")
    note = (
        "<p>Δ = quantized - full over the same problems (paired), 95% CI. Tok/s: output tokens per second of each "
        "model's sampling run on the same engine settings (- : samples reused from an earlier run).</p>"
    )
    if not c["same_student"]:
        note += "<p><b>The quantized model was not made from the evaluated student.</b></p>"
    table = "<table><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>"
    return table + note


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m r1distill.quantize.compare RUN_DIR", file=sys.stderr)
        return 2
    result = compare(argv[0])
    if result is None:
        print(f"{argv[0]}: no evaluated quantize baseline (evaluate.baselines: {{quantized: RUN_DIR/quantize}})",
              file=sys.stderr)  # fmt: skip
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
