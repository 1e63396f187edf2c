"""run: every stage of a recipe in order, skipping those already finished with the same config and input.

r1distill run pipelines/quickstart.yaml [--dry-run [--assume KEY=VALUE]] [--force STAGE] [KEY=VALUE ...]

`--dry-run` validates every stage's config without loading a model or touching the network, prints the plan
(stages, what is already done, models and whether they are available, data, resources) and an estimate of teacher
tokens and GPU-hours (r1distill.pipeline.estimate).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from r1distill.core.config import ConfigError, load_recipe
from r1distill.core.stage import is_done, resolve_dirs, setup_logging, stage_module
from r1distill.core.store import StageError, read_manifest
from r1distill.pipeline import estimate

log = logging.getLogger("r1distill.pipeline.run")


def plan(recipe) -> list[dict]:
    """One entry per stage in the recipe: its config (validated), folders and whether it is already done."""
    steps = []
    for stage in recipe.stages():
        module = stage_module(stage)
        cfg = recipe.section(stage, module.Config)
        inp, out = resolve_dirs(recipe, stage, None, None)
        steps.append(
            {"stage": stage, "module": module, "cfg": cfg, "input": inp, "output": out, "done": is_done(out, cfg, inp)}
        )
    return steps


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="r1distill run", description=__doc__.strip().splitlines()[0])
    p.add_argument("recipe")
    p.add_argument("--dry-run", action="store_true", help="validate every stage's config and print the plan")
    p.add_argument(
        "--assume", action="append", default=[], metavar="KEY=VALUE", help="change an estimate assumption (dry-run)"
    )
    p.add_argument("--force", action="append", default=[], metavar="STAGE", help="rerun STAGE even if finished")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = p.parse_intermixed_args(argv)
    setup_logging(args.verbose)
    try:
        recipe = load_recipe(args.recipe, args.overrides)
        steps = plan(recipe)
        if not steps:
            raise StageError(f"{args.recipe}: no stage sections; add e.g. a 'generate:' section")
        if args.dry_run:
            return _dry_run(recipe, steps, args)
        for step in steps:
            state = "done" if step["done"] and step["stage"] not in args.force else "to run"
            print(f"{step['stage']:<9} {state:<7} {step['input'] or '-'} -> {step['output']}", file=sys.stderr)
        t0 = time.monotonic()
        for step in steps:
            if step["done"] and step["stage"] not in args.force:
                continue
            # An upstream rerun changes its manifest hash, so later stages are re-checked, not assumed done.
            if is_done(step["output"], step["cfg"], step["input"]) and step["stage"] not in args.force:
                continue
            log.info("stage %s -> %s", step["stage"], step["output"])
            step["module"].run(step["cfg"], step["input"], step["output"])
        _print_summary(steps, time.monotonic() - t0)
    except StageError as e:
        print(f"r1distill run: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("r1distill run: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


def _assumptions(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in estimate.ASSUMPTIONS:
            raise ConfigError(f"--assume {item!r}: unknown key; known: {', '.join(estimate.ASSUMPTIONS)}")
        try:
            out[key] = float(value)
        except ValueError:
            raise ConfigError(f"--assume {item!r}: expected a number after '='") from None
    return out


def _dry_run(recipe, steps: list[dict], args) -> int:
    """Validate each stage beyond its dataclass (offline), then print the plan and the estimate on stdout."""
    assume = _assumptions(args.assume)
    for step in steps:
        _validate(step)
    print(f"plan: {recipe.where} -> {recipe.run_dir} ({len(steps)} stages; nothing is run)")
    for step in steps:
        state = "done" if step["done"] and step["stage"] not in args.force else "to run"
        print(f"\n{step['stage']:<9} {state:<7} {step['input'] or '-'} -> {step['output']}")
        for label, text in _describe(recipe, step):
            print(f"  {label:<10} {text}")
    lines, used = estimate.estimate(steps, assume)
    print("\nestimate\n" + estimate.table(lines, used))
    return 0


def _validate(step: dict) -> None:
    """A stage's own offline checks beyond its dataclass (`validate(cfg)` in its module: names the upstream
    libraries and our registries know), run without a model, data or the network."""
    check = getattr(step["module"], "validate", None)
    if check:
        check(step["cfg"])


def _model_state(ref: str | None, run_dir: Path) -> str:
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


def _source_text(src) -> str:
    where = f"Hub {src.hub}" + (f"/{src.subset}" if src.subset else "") + f" [{src.split}]" if src.hub else ""
    if src.builtin:
        where = f"built-in {src.builtin} x {src.count}"
    elif src.path:
        where = f"{src.path}" + ("" if Path(src.path).expanduser().exists() else " (missing)")
    limit = f", first {src.limit:,}" if src.limit else ""
    return f"{src.name}: {where} ({src.domain}{limit}; problem={src.problem_field}, answer={src.answer_field})"


def _describe(recipe, step: dict) -> list[tuple[str, str]]:
    """(label, text) lines for one stage of the plan: models, data, resources."""
    stage, cfg, run_dir = step["stage"], step["cfg"], recipe.run_dir
    slurm = recipe.data.get("slurm") or {}
    gpus = f"{slurm.get('nodes', 1)} node(s) x {slurm.get('gpus_per_node', '?')} GPUs" if slurm else None
    out: list[tuple[str, str]] = []
    if stage in ("generate", "evaluate"):
        role = "teacher" if stage == "generate" else "model"
        if cfg.engine == "openai":
            urls = cfg.http.base_urls if cfg.http else []
            out.append((role, f"{cfg.model} (served by {len(urls)} OpenAI-compatible endpoint(s): {', '.join(urls)})"))
        elif cfg.model is None:
            out.append((role, f"the run's trained student ({step['input'] or run_dir / 'sft'})"))
        else:
            out.append((role, _model_state(cfg.model, run_dir)))
        for label, ref in getattr(cfg, "baselines", {}).items():
            out.append(("baseline", f"{label}: {_model_state(ref, run_dir)}"))
        if stage == "generate":
            out += [("prompts", _source_text(src)) for src in cfg.sources]
            out.append(("sampling", f"n={cfg.n}, {_sampling_text(cfg.sampling)}"))
        else:
            out.append(("benchmarks", f"{', '.join(cfg.benchmarks)} (n={cfg.n}, {_sampling_text(cfg.sampling)})"))
        par = {
            k: cfg.vllm[k]
            for k in ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size")
            if k in cfg.vllm
        }
        engine = f"engine {cfg.engine}" + (f", vLLM {par}" if par else "")
        if cfg.engine == "openai" and cfg.http:
            engine += f", {cfg.http.max_in_flight} requests in flight"
        if stage == "generate" and gpus:
            engine += f"; on Slurm: r1distill submit generate --shards N ({gpus} per shard)"
        out.append(("resources", engine))
    elif stage in ("verify", "filter"):
        if stage == "filter":
            out.append(("policy", f"{cfg.policy}" + (f", overrides {cfg.overrides}" if cfg.overrides else "")))
            if cfg.tokenizer:
                out.append(("tokenizer", _model_state(cfg.tokenizer, run_dir)))
        out.append(("resources", f"CPU: {cfg.workers} worker processes"))
    elif stage == "build":
        out.append(("tokenizer", _model_state(cfg.tokenizer, run_dir)))
        out.append(("resources", "CPU"))
    elif stage in ("sft", "distill", "rl"):
        if cfg.model is None:
            out.append(("student", f"the output of {step['input']}"))
        else:
            out.append(("student", _model_state(cfg.model, run_dir)))
        if getattr(cfg, "chat_template", None):
            out.append(("template", cfg.chat_template))
        if stage == "distill":
            out.append(("teacher", cfg.teacher))
        if stage in ("distill", "rl"):
            out += [("prompts", _source_text(src)) for src in cfg.sources]
        if stage == "rl":
            out.append(("rewards", ", ".join(f"{k} x {v}" for k, v in cfg.rewards.items())))
        elif stage == "sft":
            out.append(("data", str(cfg.dataset or step["input"])))
        method = "LoRA" if getattr(cfg, "peft", None) else "full fine-tune"
        ds = f", DeepSpeed {cfg.deepspeed}" if getattr(cfg, "deepspeed", None) else ""
        where = f"; Slurm: r1distill submit {stage} --nodes {slurm.get('nodes', 1)} ({gpus})" if gpus else ""
        out.append(("resources", f"{method}{ds}{where}"))
    return out


def _sampling_text(sampling: dict) -> str:
    from r1distill.generate.stage import R1_SAMPLING

    return ", ".join(f"{k}={v}" for k, v in {**R1_SAMPLING, **sampling}.items())


def _print_summary(steps: list[dict], wall: float) -> None:
    """Per stage: where its output is and what it holds (the module's `summary(manifest)` when it has one)."""
    print(f"\nrun finished in {wall:.0f} s", file=sys.stderr)
    for step in steps:
        manifest = read_manifest(step["output"]) or {}
        describe = getattr(step["module"], "summary", None)
        text = describe(manifest) if describe else json.dumps(manifest.get("counts", {}))
        print(f"  {step['stage']:<9} -> {step['output']}\n            {text}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
