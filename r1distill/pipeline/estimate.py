"""Back-of-the-envelope cost of a recipe: teacher tokens and GPU-hours per stage, from the recipe's own numbers.

Used by `r1distill run RECIPE --dry-run`. Nothing is loaded or downloaded: prompt counts come from `limit`s,
built-in set sizes and local files; a stage that already finished contributes its measured figures instead of
assumptions. Every assumption is a named value in `ASSUMPTIONS`, printed with the table and overridable with
`--assume KEY=VALUE`, because a cost estimate nobody can check is worse than none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1distill.core.store import read_manifest

# Defaults, each with the reason it is a sensible first guess (all overridable).
ASSUMPTIONS: dict[str, float] = {
    # R1's correct math traces average roughly a quarter of a 32k budget (OpenR1-Math-220k: ~6-8k tokens).
    "completion_fill": 0.25,
    "prompt_tokens": 200.0,  # a competition problem statement with the chat template around it
    "keep_rate": 0.5,  # samples surviving verify + filter, before verify's per-prompt cap
    "gpu_tflops": 989.0,  # H100 SXM dense bf16 peak
    "mfu": 0.35,  # a long-context ZeRO-3 SFT run with gradient checkpointing reaches about a third of peak
    "default_epochs": 3.0,  # transformers' num_train_epochs default, when the recipe sets none
}

# Decode throughput of one GPU under vLLM at high concurrency, output tokens/s, by active parameters (billions).
# Rough H100 figures for long reasoning outputs; DeepSeek-R1 (37B active of 671B, MoE) sits near the 40B row.
DECODE_TOKENS_PER_GPU_S = ((2.0, 8000.0), (9.0, 3000.0), (16.0, 1800.0), (40.0, 500.0), (80.0, 300.0))
SLOWEST_DECODE = 150.0

KNOWN_PARAMS_B = {"deepseek-r1": 37.0, "deepseek-v3": 37.0, "bundled:smollm2": 0.135, "smollm2-135m": 0.135}
# Problems per registered benchmark (public test sets), for the evaluate estimate.
BENCHMARK_SIZES = {"aime24": 30, "aime25": 30, "amc23": 40, "math500": 500, "gsm8k": 1319, "gpqa_diamond": 198,
                   "livecodebench": 880, "humaneval": 164, "mbpp": 500}  # fmt: skip


@dataclass
class Line:
    stage: str
    what: str
    tokens: float | None
    gpu_hours: float | None
    basis: str


def params_b(model: str | None) -> float | None:
    """Active parameters in billions from a model reference ('Qwen/Qwen2.5-Math-7B' -> 7.0), None when unknown."""
    if not model:
        return None
    low = str(model).lower()
    for key, value in KNOWN_PARAMS_B.items():
        if key in low:
            return value
    m = re.search(r"(\d+(?:\.\d+)?)\s*([bm])(?![a-z])", Path(low).name)
    if not m:
        return None
    return float(m.group(1)) / (1000.0 if m.group(2) == "m" else 1.0)


def decode_rate(model: str | None) -> float | None:
    """Assumed output tokens/s per GPU for `model` (see DECODE_TOKENS_PER_GPU_S)."""
    size = params_b(model)
    if size is None:
        return None
    return next((rate for limit, rate in DECODE_TOKENS_PER_GPU_S if size <= limit), SLOWEST_DECODE)


def _file_rows(path: Path) -> int | None:
    if not path.exists():
        return None
    if path.suffix == ".jsonl":
        with open(path, "rb") as f:
            return sum(1 for line in f if line.strip())
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    return None


def source_prompts(src: Any, limit: int | None) -> int | None:
    """Prompts one generate source yields (the smaller of its limit and generate.limit), None when unknowable."""
    caps = [x for x in (src.limit, limit) if x is not None]
    if src.builtin:
        caps.append(src.count)
    elif src.path:
        rows = _file_rows(Path(src.path).expanduser())
        if rows is not None:
            caps.append(rows)
        elif not caps:
            return None
    elif not caps:  # a Hub source without a limit: its size is on the Hub, not here
        return None
    return min(caps)


def _fmt_hours(hours: float | None) -> str:
    if hours is None:
        return "?"
    return f"{hours:,.0f}" if hours >= 10 else f"{hours:.2g}"


def _fmt_tokens(tokens: float | None) -> str:
    if tokens is None:
        return "?"
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if tokens >= size:
            return f"{tokens / size:.3g}{unit}"
    return f"{tokens:.0f}"


def estimate(steps: list, assume: dict[str, float] | None = None) -> tuple[list[Line], dict]:
    """One Line per costed stage of a plan (see r1distill.pipeline.run.plan), and the assumptions used."""
    a = {**ASSUMPTIONS, **(assume or {})}
    by_stage = {s.stage: s for s in steps}
    lines: list[Line] = []
    samples = prompts = mean_completion = None
    if "generate" in by_stage:
        step = by_stage["generate"]
        cfg, manifest = step.cfg, read_manifest(step.output)
        from r1distill.generate.stage import sampling_params

        budget = sampling_params(cfg)["max_tokens"]
        if manifest:
            prompts, samples = manifest["counts"]["prompts"], manifest["counts"]["samples"]
            mean_completion = manifest["stats"]["mean_completion_tokens"]
            basis = f"measured: {samples:,} samples, mean {mean_completion:,.0f} output tokens"
        else:
            counts = [source_prompts(src, cfg.limit) for src in cfg.sources]
            prompts = None if None in counts else sum(counts)
            mean_completion = budget * a["completion_fill"]
            samples = prompts * cfg.n if prompts is not None else None
            basis = (
                f"{prompts:,} prompts x n={cfg.n} x {budget:,} max_tokens x fill {a['completion_fill']}"
                if prompts is not None
                else "a Hub source without `limit`: set generate.sources[i].limit to estimate"
            )
        tokens = samples * mean_completion if samples is not None else None
        rate = decode_rate(cfg.model)
        hours = tokens / rate / 3600 if tokens is not None and rate else None
        basis += f"; {rate:,.0f} tok/s/GPU" if rate else "; unknown teacher size"
        lines.append(Line("generate", f"teacher {cfg.model}", tokens, hours, basis))
    if "sft" in by_stage:
        lines.append(_sft_line(by_stage, a, samples, prompts, mean_completion))
    if "distill" in by_stage:
        text = "not estimated: its cost is set by trl.max_steps x batch x max_completion_length, plus teacher passes"
        lines.append(Line("distill", "on-policy distillation", None, None, text))
    if "rl" in by_stage:
        lines.append(Line("rl", "GRPO", None, None, "not estimated: its cost is set by trl.max_steps x generations"))
    if "evaluate" in by_stage:
        student = by_stage["sft"].cfg.model if "sft" in by_stage else None
        lines.append(_evaluate_line(by_stage["evaluate"], a, student))
    return lines, a


def _sft_line(by_stage, a, samples, prompts, mean_completion) -> Line:
    step = by_stage["sft"]
    cfg = step.cfg
    build = read_manifest(by_stage["build"].output) if "build" in by_stage else None
    epochs = float(cfg.trl.get("num_train_epochs", a["default_epochs"]))
    max_len = cfg.trl.get("max_length") or cfg.trl.get("max_seq_length")
    if build:
        rows, per_row = build["counts"]["train"], build["lengths"]["train"]["mean"]
        basis = f"measured build: {rows:,} rows x mean {per_row:,.0f} tokens"
    elif samples is not None:
        cap = by_stage["verify"].cfg if "verify" in by_stage else None
        per_prompt = getattr(getattr(cap, "policy", None), "max_correct_per_prompt", None)
        rows = samples * a["keep_rate"]
        if per_prompt and prompts:
            rows = min(rows, prompts * per_prompt)
        per_row = a["prompt_tokens"] + mean_completion
        if max_len:
            per_row = min(per_row, float(max_len))
        basis = f"~{rows:,.0f} rows (keep {a['keep_rate']}) x {per_row:,.0f} tokens"
    else:
        return Line("sft", f"student {cfg.model}", None, None, "unknown dataset size (no generate numbers)")
    tokens = rows * per_row * epochs
    size = params_b(cfg.model)
    hours = 6 * size * 1e9 * tokens / (a["mfu"] * a["gpu_tflops"] * 1e12) / 3600 if size else None
    basis += f" x {epochs:g} epochs; 6 x {size:g}B params x tokens at {a['mfu']} MFU" if size else "; unknown size"
    return Line("sft", f"student {cfg.model}", tokens, hours, basis)


def _evaluate_line(step, a, student: str | None) -> Line:
    """Sampling cost of the evaluated model (the run's student unless evaluate.model names one) and baselines."""
    cfg = step.cfg
    model = cfg.model or student
    from r1distill.generate.stage import R1_SAMPLING

    budget = {**R1_SAMPLING, **cfg.sampling}["max_tokens"]
    problems, unknown = 0, []
    for name in cfg.benchmarks:
        size = BENCHMARK_SIZES.get(name)
        if size is None:
            from r1distill.evaluate import benchmarks

            bench = benchmarks.get(name)
            size = len(bench.builtin()) if bench.builtin else None
        if size is None:
            unknown.append(name)
        else:
            problems += min(size, cfg.limit) if cfg.limit else size
    # a model named twice is sampled once (evaluate's same_model_as); the trained student (sized by its base) is
    # never the same as a baseline
    bases = [b for b in dict.fromkeys(getattr(cfg, "baselines", {}).values()) if not (cfg.model and b == cfg.model)]
    models = [model, *bases]
    tokens = problems * cfg.n * budget * a["completion_fill"] * len(models)
    rates = [decode_rate(m) for m in models]
    rate = rates[0] if None not in rates else None
    hours = sum(tokens / len(models) / r / 3600 for r in rates) if rate else None
    basis = f"{problems:,} problems x n={cfg.n} x {budget:,} max_tokens x fill {a['completion_fill']}"
    basis += f" x {len(models)} models" if len(models) > 1 else ""
    basis += f"; {rate:,.0f} tok/s/GPU" if rate else "; unknown model size"
    if unknown:
        basis += f"; sizes unknown: {', '.join(unknown)}"
    return Line("evaluate", f"model {model or 'the trained student'}", tokens, hours, basis)


def table(lines: list[Line], assumptions: dict[str, float]) -> str:
    """The estimate as a fixed-width table, with its total and the assumptions it rests on."""
    rows = [("stage", "tokens", "GPU-hours", "model", "from")]
    rows += [(ln.stage, _fmt_tokens(ln.tokens), _fmt_hours(ln.gpu_hours), ln.what, ln.basis) for ln in lines]
    known = [ln.gpu_hours for ln in lines if ln.gpu_hours is not None]
    rows.append(("total", "", _fmt_hours(sum(known)) if known else "?", "", "verify/filter/build run on CPUs"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    out = ["  ".join(f"{c:<{w}}" for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4] for r in rows]
    shown = ", ".join(f"{k}={v:g}" for k, v in assumptions.items())
    out.append(f"assumptions (change with --assume KEY=VALUE): {shown}")
    out.append(f"decode tok/s per GPU by active params (B): {DECODE_TOKENS_PER_GPU_S}; H100-class GPUs")
    return "\n".join(out)
