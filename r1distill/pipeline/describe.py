"""The words of the dry-run plan that several stages share: model availability, prompt sources, sampling, engines.

Each stage's `describe` (see `core.stage.Stage`) builds its own lines from these; nothing here is per-stage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def model_state(ref: str | None, run_dir: Path) -> str:
    """Whether a model reference can be loaded here, found without loading it or asking the Hub."""
    from r1distill.core.models import BUNDLED, HUB_ID, bundled_ready

    if not ref:
        return "-"
    if ref in (BUNDLED, "bundled", "default"):
        return f"{ref} (bundled SmolLM2-135M-Instruct, {'ready' if bundled_ready() else 'converted on first use'})"
    path = Path(ref).expanduser()
    if path.exists():
        return f"{ref} (local folder)"
    if path.resolve().is_relative_to(run_dir.resolve()):
        return f"{ref} (made by this run)"
    if HUB_ID.match(ref):
        from huggingface_hub import try_to_load_from_cache

        cached = isinstance(try_to_load_from_cache(ref, "config.json"), str) or isinstance(
            try_to_load_from_cache(ref, "tokenizer_config.json"), str
        )
        return f"{ref} (Hub id, {'in the local cache' if cached else 'not in local cache: downloaded at run time'})"
    return f"{ref} (missing: no such folder, not a Hub id)"


def source_text(src: Any) -> str:
    """One prompt source (generate/rl `sources:`) as the plan shows it."""
    where = f"Hub {src.hub}" + (f"/{src.subset}" if src.subset else "") + f" [{src.split}]" if src.hub else ""
    if src.builtin:
        where = f"built-in {src.builtin} x {src.count}"
    elif src.path:
        where = f"{src.path}" + ("" if Path(src.path).expanduser().exists() else " (missing)")
    limit = f", first {src.limit:,}" if src.limit else ""
    return f"{src.name}: {where} ({src.domain}{limit}; problem={src.problem_field}, answer={src.answer_field})"


def sampling_text(sampling: dict) -> str:
    from r1distill.generate.stage import R1_SAMPLING

    return ", ".join(f"{k}={v}" for k, v in {**R1_SAMPLING, **sampling}.items())


def model_line(role: str, cfg: Any, run_dir: Path) -> tuple[str, str]:
    """The model a sampling stage (generate, evaluate) runs: served by endpoints, or loaded here."""
    if cfg.engine == "openai":
        urls = cfg.http.base_urls if cfg.http else []
        return role, f"{cfg.model} (served by {len(urls)} OpenAI-compatible endpoint(s): {', '.join(urls)})"
    return role, model_state(cfg.model, run_dir)


def _gpus(recipe: Any) -> str | None:
    slurm = recipe.data.get("slurm") or {}
    return f"{slurm.get('nodes', 1)} node(s) x {slurm.get('gpus_per_node', '?')} GPUs" if slurm else None


def engine_line(cfg: Any, recipe: Any, sharded: bool = False) -> tuple[str, str]:
    """The engine of a sampling stage, its parallelism, and how to run it on Slurm."""
    par = {k: cfg.vllm[k] for k in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size")
           if k in cfg.vllm}  # fmt: skip
    engine = f"engine {cfg.engine}" + (f", vLLM {par}" if par else "")
    if cfg.engine == "openai" and cfg.http:
        engine += f", {cfg.http.max_in_flight} requests in flight"
    gpus = _gpus(recipe)
    if sharded and gpus:
        engine += f"; on Slurm: r1distill submit generate --shards N ({gpus} per shard)"
    return "resources", engine


def training_lines(stage: str, cfg: Any, inp: Path | None, recipe: Any) -> list[tuple[str, str]]:
    """The student, template and resources of a training stage (sft, distill, rl)."""
    slurm = recipe.data.get("slurm") or {}
    out = [("student", f"the output of {inp}" if cfg.model is None else model_state(cfg.model, recipe.run_dir))]
    if getattr(cfg, "chat_template", None):
        out.append(("template", cfg.chat_template))
    method = "LoRA" if getattr(cfg, "peft", None) else "full fine-tune"
    ds = f", DeepSpeed {cfg.deepspeed}" if getattr(cfg, "deepspeed", None) else ""
    gpus = _gpus(recipe)
    where = f"; Slurm: r1distill submit {stage} --nodes {slurm.get('nodes', 1)} ({gpus})" if gpus else ""
    return [*out, ("resources", f"{method}{ds}{where}")]
