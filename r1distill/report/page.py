"""report: one HTML page per run, for a person rather than a parser.

    r1distill report runs/quickstart            -> runs/quickstart/report/index.html (+ PNG charts beside it)

It reads what the stages left (each `manifest.json`, build's parquet length columns, sft's `trainer_state.json`,
evaluate's `report.json`) and shows: the funnel from prompts to kept samples with every drop reason, length
histograms, training curves, the evaluation table beside DeepSeek's published numbers, and the exact command and
config hash of each stage. A stage that did not run says so. The page and its charts are written into a temporary
folder renamed into place, so a reader never sees a half-written report.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from html import escape
from pathlib import Path
from typing import Any

from r1distill.core.config import STAGES
from r1distill.core.stage import setup_logging
from r1distill.core.store import StageError, read_manifest
from r1distill.quantize.compare import section_html
from r1distill.report import charts

log = logging.getLogger(__name__)
REPORT = "report"
CSS = """
body{font-family:system-ui,"Segoe UI",sans-serif;margin:0 auto;max-width:1180px;padding:24px;color:#1f2933}
h1{margin:0 0 4px}h2{border-bottom:2px solid #e4e7eb;padding-bottom:4px;margin-top:36px}.sub{color:#616e7c}
table{border-collapse:collapse;margin:10px 0;font-size:14px}td,th{border:1px solid #d9dee3;padding:4px 9px;
text-align:left;vertical-align:top}th{background:#f0f3f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:16px 0}.card{border:1px solid #d9dee3;border-radius:8px;
padding:10px 14px;min-width:120px}.card b{display:block;font-size:22px}.card span{color:#616e7c;font-size:13px}
.stage-done{background:#e3f4e8}.stage-missing{background:#fbeaea}.notrun{color:#8a4b3c;font-style:italic}
img{max-width:100%;border:1px solid #e4e7eb;margin:6px 0}
.pair{display:flex;gap:12px;align-items:flex-start}.pair img{width:49%}
.side{display:flex;gap:12px;align-items:flex-start}.side>img{width:55%}.side>div{width:45%}.side div img{width:100%}
code{font-size:12px;word-break:break-all}
.ev{font-size:13px;white-space:pre-wrap}mark{background:#ffe08a}
"""


def _num(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _thousands(v: Any) -> str:
    return f"{v:,}" if isinstance(v, (int, float)) else "-"  # a split with no rows has only `n`


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _table(head: list[str], rows: list[list[Any]], numeric: set[int] = frozenset()) -> str:
    cells = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=n' if i in numeric else ''}>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{cells}</tr>{body}</table>"


def _not_run(stage: str) -> str:
    return f'<p class="notrun">{escape(stage)}: not run (no finished {escape(stage)}/manifest.json in this run).</p>'


def funnel_steps(m: dict[str, dict | None]) -> list[dict[str, Any]]:
    """Samples remaining after each step from generation to the built dataset; each drop reason is its own step."""
    steps: list[dict[str, Any]] = []
    gen, ver, fil, bld = (m.get(s) for s in ("generate", "verify", "filter", "build"))
    if gen:
        c = gen["counts"]
        steps.append({"stage": "generate", "label": f"generated ({c['prompts']:,} prompts x n={c['n']})",
                      "remaining": c["samples"], "reason": ""})  # fmt: skip
    if ver:
        c = ver["counts"]
        remaining = c["samples"]
        for reason, n in sorted(c.get("dropped", {}).items(), key=lambda kv: -kv[1]):
            remaining -= n
            steps.append({"stage": "verify", "label": f"verify: {reason}", "dropped": n, "remaining": remaining,
                          "reason": reason})  # fmt: skip
        if remaining != c["kept"]:  # prompt-level rules (always/never solved, per-prompt cap) not in `dropped`
            steps.append({"stage": "verify", "label": "verify: prompt rules", "dropped": remaining - c["kept"],
                          "remaining": c["kept"], "reason": "prompt rules"})  # fmt: skip
    if fil:
        examples = fil.get("examples", {})
        for step in fil.get("funnel", []):
            if "dropped" in step:
                steps.append({"stage": "filter", "label": f"filter: {step['step']}", "dropped": step["dropped"],
                              "remaining": step["remaining"], "reason": step["step"],
                              "examples": examples.get(step["step"], [])})  # fmt: skip
    if bld:
        rows = sum(bld["counts"].values())
        before = steps[-1]["remaining"] if steps else rows
        steps.append({"stage": "build", "label": "dataset rows (train + validation)", "remaining": rows,
                      "dropped": max(before - rows, 0), "reason": "not built" if before > rows else ""})  # fmt: skip
    return steps


def _build_lengths(build_dir: Path, manifest: dict) -> dict[str, dict[str, list[int]]]:
    """{column: {split: values}} for num_tokens and completion_tokens, read from the parquet columns alone."""
    import pyarrow.parquet as pq

    out: dict[str, dict[str, list[int]]] = {"num_tokens": {}, "completion_tokens": {}}
    for split in ("train", "validation"):
        files = sorted((build_dir / "data").glob(f"{split}-*.parquet"))
        for column in out:
            values: list[int] = []
            for f in files:
                if column in pq.ParquetFile(f).schema_arrow.names:
                    values += [
                        v for v in pq.read_table(f, columns=[column]).column(column).to_pylist() if v is not None
                    ]
            if values:
                out[column][split] = values
    return out


def _section_funnel(m, out: Path) -> str:
    steps = funnel_steps(m)
    if not steps:
        return _not_run("generate")
    charts.funnel(steps, out / "funnel.png")
    rows = []
    for s in steps:
        where = f"{s['stage']}/rejected/{s['reason']}/" if s["stage"] == "filter" else ""
        ex = ", ".join(s.get("examples", [])[:3])
        detail = " ".join(x for x in (f"<code>{escape(where)}</code>" if where else "", escape(ex)) if x)
        rows.append([escape(s["stage"]), escape(s["label"]), f"{s.get('dropped', 0):,}" if s.get("dropped") else "",
                     f"{s['remaining']:,}", detail])  # fmt: skip
    missing = [s for s in ("generate", "verify", "filter", "build") if not m.get(s)]
    note = "".join(_not_run(s) for s in missing)
    if m.get("verify"):
        c = m["verify"]["counts"]
        note += (f"<p>Prompts: {c['prompts']:,}; never solved by the teacher: {c['prompts_never_solved']:,}; "
                 f"always solved: {c['prompts_always_solved']:,}; dropped by prompt rules: "
                 f"{c.get('prompts_dropped', 0):,}. Rejected samples stay on disk under their reason's folder."
                 "</p>")  # fmt: skip
    table = _table(["stage", "step", "dropped", "remaining", "where to look / examples"], rows, {2, 3})
    evidence = _filter_evidence(m.get("filter") or {})
    return f'<img src="funnel.png" alt="funnel from generated samples to dataset rows">{table}{note}{evidence}'


def _filter_evidence(fil: dict[str, Any]) -> str:
    """Up to three drops per filter reason, each with its excerpt highlighted in its context and the threshold."""
    evidence = fil.get("evidence") or {}
    if not evidence:
        return ""
    rows = []
    for reason, items in evidence.items():
        for ev in items[:3]:
            text = (f"…{escape(ev.get('before', ''))}<mark>{escape(ev.get('excerpt', ''))}</mark>"
                    f"{escape(ev.get('after', ''))}…").replace("\n", "⏎ ")  # fmt: skip
            rule = escape(json.dumps(ev.get("threshold"), ensure_ascii=False))
            rows.append([escape(reason), f"<code>{escape(ev['id'])}</code>",
                         escape(f"{ev.get('part') or 'text'} @ {ev.get('offset', 0)}"), f"<code>{rule}</code>",
                         f'<span class="ev">{text}</span>'])  # fmt: skip
    head = ["reason", "sample", "where", "threshold", "evidence (highlighted)"]
    return "<h3>Why: evidence of the first drops per filter reason</h3>" + _table(head, rows)


def _section_lengths(run_dir: Path, m, out: Path) -> str:
    html = []
    fil = m.get("filter")
    if fil and fil.get("lengths", {}).get("completion_tokens"):
        lt = fil["lengths"]["completion_tokens"]
        keys = ["n", "mean", "p10", "p50", "p90", "p99", "max"]
        rows = [[escape(k)] + [_thousands(lt[k].get(q)) for q in keys] for k in lt]
        html.append(
            "<p>Completion tokens before and after the filter:</p>" + _table(["", *keys], rows, set(range(1, 8)))
        )
    bld = m.get("build")
    if not bld:
        return "".join(html) + _not_run("build")
    lengths = _build_lengths(run_dir / "build", bld)
    titles = {"num_tokens": "tokens per training row (prompt + reasoning + answer, student tokenizer)",
              "completion_tokens": "completion tokens per row (what the student learns to write)"}  # fmt: skip
    images = []
    for column, series in lengths.items():
        if series:
            charts.histogram(series, out / f"lengths_{column}.png", titles[column])
            images.append(f'<img src="lengths_{column}.png" alt="{escape(titles[column])}">')
    html.append(f'<div class="pair">{"".join(images)}</div>')
    if not any(lengths.values()) and bld.get("lengths", {}).get("train", {}).get("histogram"):
        h = bld["lengths"]["train"]["histogram"]
        charts.binned(h["edges"], h["counts"], out / "lengths_num_tokens.png", titles["num_tokens"])
        html.append('<img src="lengths_num_tokens.png" alt="tokens per training row">')
    return "".join(html)


def _section_training(run_dir: Path, m, out: Path) -> str:
    html = []
    for stage, keys in (("sft", ("loss", "eval_loss")), ("distill", ("loss", "entropy")), ("rl", ("reward", "loss"))):
        man = m.get(stage)
        if not man and stage == "distill":  # an optional stage: most runs go from sft straight to rl or evaluate
            continue
        if not man:
            html.append(f"<h3>{stage}</h3>" + _not_run(stage))
            continue
        history = _history(run_dir / stage)
        series = {
            k: ([e["step"] for e in history if k in e], [e[k] for e in history if k in e])
            for k in keys
            if any(k in e for e in history)
        }
        html.append(f'<h3>{stage}</h3><div class="pair">')
        if series:
            charts.curves(series, out / f"{stage}_curve.png", " / ".join(series))
            html.append(f'<img src="{stage}_curve.png" alt="{stage} training curve">')
        else:
            html.append("<p>No logged steps in trainer_state.json.</p>")
        shown = ("base_model", "teacher", "dataset", "train_rows", "steps", "first_loss", "train_loss", "loss_first",
                 "loss_last", "train_tokens",
                 "wall_s", "train_tokens_per_s", "world_size", "resumed_from")  # fmt: skip
        rows = [[escape(k), escape(_num(man[k]))] for k in shown if k in man]
        html.append(_table(["field", "value"], rows) + "</div>")
    return "".join(html)


def _history(folder: Path) -> list[dict[str, Any]]:
    path = folder / "trainer_state.json"
    if not path.exists():
        return []
    try:
        return [e for e in json.loads(path.read_text(encoding="utf-8")).get("log_history", []) if "step" in e]
    except json.JSONDecodeError:
        log.warning("%s: unreadable; no training curve", path)
        return []


def _section_eval(run_dir: Path, m, out: Path) -> str:
    path = run_dir / "evaluate" / "report.json"
    if not m.get("evaluate") or not path.exists():
        return _not_run("evaluate")
    report = json.loads(path.read_text(encoding="utf-8"))
    models = [(report.get("label", "model"), report.get("model"), report["benchmarks"])]
    models += [(label, b.get("model"), b["benchmarks"]) for label, b in report.get("baselines", {}).items()]
    rows, chart_rows = [], []
    for name in report["benchmarks"]:
        values, ci = {}, {}
        for label, ref, benches in models:
            b = benches.get(name)
            if not b:
                continue
            low, high = b.get("pass@1_ci95", (None, None))
            cons = next(((k, v) for k, v in b.items() if k.startswith("cons@")), (None, None))
            pub = b.get("published")
            rows.append([escape(name), escape(f"{label} ({ref})"), f"{b['problems']:,}", _pct(b["pass@1"]),
                         f"{_pct(low)}-{_pct(high)}", "-" if pub is None else f"{pub:.1f}",
                         f"{_pct(cons[1])} ({escape(cons[0])})" if cons[0] else "-",
                         _pct(b.get("truncation_rate")), escape(b.get("note", ""))])  # fmt: skip
            values[label] = 100 * b["pass@1"]
            ci[label] = (100 * low, 100 * high) if low is not None else None
            if pub is not None:
                values["published"] = pub
        chart_rows.append({"benchmark": name, "values": values, "ci": ci})
    charts.scores(chart_rows, out / "eval.png")
    head = ["benchmark", "model", "problems", "pass@1 %", "95% CI", "published pass@1 %", "cons", "truncated %", "note"]
    caveats = "".join(f"<li>{escape(c)}</li>" for c in report.get("caveats", []))
    text = (f"<p>n={report.get('n')} samples per problem; published numbers: DeepSeek-R1-Distill model cards "
            "(64 samples, temperature 0.6, top-p 0.95, 32,768 tokens).</p>")  # fmt: skip
    bars = '<img src="eval.png" alt="pass@1 beside published">'
    paired = _paired(report, out)
    top = f'<div class="side">{bars}<div>{paired}</div></div>' if paired else bars
    return f"{top}{text}{_table(head, rows, {2, 3, 5, 7})}" + (f"<ul>{caveats}</ul>" if caveats else "")


def _paired(report: dict[str, Any], out: Path) -> str:
    """The evaluated model against each baseline on the same problems: Δ pass@1 with its paired CI and p-value, as
    a forest plot and a table (empty without baselines)."""
    label = report.get("label", "model")
    rows, chart_rows = [], []
    for base, benches in report.get("paired", {}).items():
        same = report.get("baselines", {}).get(base, {}).get("same_model_as")
        shown = f"{base} (= {same})" if same else base
        for name, d in benches.items():
            if d.get("delta") is None:
                continue
            ci = d.get("ci95")
            p = "-" if d.get("p_value") is None else f"{d['p_value']:.3g}"
            rows.append([escape(name), escape(shown), f"{d['problems']:,}", f"{100 * d['delta']:+.1f}",
                         f"{100 * ci[0]:+.1f} to {100 * ci[1]:+.1f}" if ci else "-", p,
                         f"{d['wins']} / {d['losses']}"])  # fmt: skip
            chart_rows.append({"label": f"{name}: {label} - {shown}", "delta": 100 * d["delta"],
                               "ci": (100 * ci[0], 100 * ci[1]) if ci else None})  # fmt: skip
    if not rows:
        return ""
    charts.deltas(chart_rows, out / "eval_delta.png")
    method = next(d["method"] for b in report["paired"].values() for d in b.values())
    head = ["benchmark", "baseline", "problems", "Δ pass@1", "95% CI", "p", "better / worse"]
    return (f'<img src="eval_delta.png" alt="paired difference in pass@1 with its 95% CI">'
            f"{_table(head, rows, {2, 3, 5})}<p class=sub>Δ pass@1 = {escape(label)} - baseline, in points, paired "
            "over the problems both models were scored on: "
            f"{escape(method)}.</p>")  # fmt: skip


def _section_provenance(run_dir: Path, m) -> str:
    rows = []
    for stage in STAGES:
        man = m.get(stage)
        if man:
            rows.append([escape(stage), f"<code>{escape(str(man.get('command', '-')))}</code>",
                         f"<code>{escape(str(man.get('config_hash')))}</code>",
                         f"<code>{escape(str(man.get('input_hash') or '-'))}</code>", escape(str(man.get("created"))),
                         escape(str(man.get("r1distill_version", "-")))])  # fmt: skip
    env = {}
    path = run_dir / "evaluate" / "report.json"
    if path.exists():
        env = json.loads(path.read_text(encoding="utf-8")).get("environment", {})
    env_rows = [
        [escape(k), f"<code>{escape(v if isinstance(v, str) else json.dumps(v))}</code>"] for k, v in env.items()
    ]
    env_html = "<h3>Evaluation environment</h3>" + _table(["", ""], env_rows) if env else ""
    return _table(["stage", "command", "config hash", "input hash", "finished", "r1distill"], rows) + env_html


def _cards(run_dir: Path, m) -> str:
    cards = []
    gen, ver, fil, bld, sft, ev = (m.get(s) for s in ("generate", "verify", "filter", "build", "sft", "evaluate"))
    if gen:
        cards.append((f"{gen['counts']['samples']:,}", f"samples from {gen['counts']['prompts']:,} prompts"))
    if ver:
        cards.append((_pct(ver["counts"]["correct"] / max(ver["counts"]["samples"], 1)) + "%", "verified correct"))
    if fil:
        cards.append((f"{fil['counts']['kept']:,}", f"kept of {fil['counts']['in']:,} after the filter"))
    if bld:
        cards.append((f"{sum(bld['counts'].values()):,}", "dataset rows"))
    if sft and sft.get("train_loss") is not None:
        cards.append((f"{sft['train_loss']:.3g}", f"final train loss ({sft.get('steps')} steps)"))
    if ev and (run_dir / "evaluate" / "report.json").exists():
        report = json.loads((run_dir / "evaluate" / "report.json").read_text(encoding="utf-8"))
        for name, b in report.get("benchmarks", {}).items():
            cards.append((_pct(b["pass@1"]) + "%", f"{name} pass@1"))
    stages = "".join(
        f'<span class="card {"stage-done" if m.get(s) else "stage-missing"}"><b>{"✓" if m.get(s) else "–"}</b>'
        f"<span>{s}</span></span>"
        for s in STAGES
        if s != "publish" or m.get(s)
    )
    body = "".join(f'<div class="card"><b>{escape(v)}</b><span>{escape(t)}</span></div>' for v, t in cards)
    return f'<div class="cards">{stages}</div><div class="cards">{body}</div>'


def render(run_dir: Path, out: Path) -> Path:
    """Write index.html and its PNGs into `out` (an empty folder); returns the page's path."""
    m = {stage: read_manifest(run_dir / stage) for stage in STAGES}
    sections = [
        ("funnel", "From prompts to kept samples", _section_funnel(m, out)),
        ("lengths", "Lengths", _section_lengths(run_dir, m, out)),
        ("training", "Training", _section_training(run_dir, m, out)),
        ("evaluation", "Evaluation", _section_eval(run_dir, m, out)),
        *([("quantized", "Quantized student beside the full one", q)] if (q := section_html(run_dir)) else []),
        ("provenance", "Commands and config hashes", _section_provenance(run_dir, m)),
    ]
    nav = " · ".join(f'<a href="#{key}">{escape(title)}</a>' for key, title, _ in sections)
    body = "".join(f'<h2 id="{key}">{escape(title)}</h2>{html}' for key, title, html in sections)
    made = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    page = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>r1distill run {escape(run_dir.name)}'
        f"</title><style>{CSS}</style></head><body><h1>Run {escape(run_dir.name)}</h1>"
        f'<div class="sub">{escape(str(run_dir.resolve()))} · report made {made}</div>{_cards(run_dir, m)}'
        f"<nav>{nav}</nav>{body}</body></html>\n"
    )
    (out / "index.html").write_text(page, encoding="utf-8")
    return out / "index.html"


def write_report(run_dir: str | Path, output: str | Path | None = None) -> Path:
    """Render the report of `run_dir` into `output` (default RUN_DIR/report) atomically; returns index.html."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise StageError(f"{run_dir}: no such run folder (give the run_dir of a recipe, e.g. runs/quickstart)")
    if not any(read_manifest(run_dir / s) for s in STAGES):
        raise StageError(f"{run_dir}: no finished stage (no */manifest.json); run a recipe into it first")
    target = Path(output) if output else run_dir / REPORT
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    tmp.chmod(0o755)  # mkdtemp makes it private; a report is for reading
    try:
        render(run_dir, tmp)
        old = target.parent / f".{target.name}.old-{tmp.name.rsplit('-', 1)[-1]}"
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target / "index.html"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="r1distill report", description=__doc__.strip().splitlines()[0])
    p.add_argument("run_dir", help="a run folder, e.g. runs/quickstart")
    p.add_argument("--output", "-o", help="report folder (default: RUN_DIR/report)")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    setup_logging(args.verbose)
    try:
        page = write_report(args.run_dir, args.output)
    except StageError as e:
        print(f"r1distill report: error: {e}", file=sys.stderr)
        return 2
    print(page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
