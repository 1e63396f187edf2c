"""rl: GRPO after distillation (TRL's GRPOTrainer), rewarded by the project's own verifiers.

    r1distill rl -c RECIPE                                                one process
    accelerate launch --num_processes 8 --module r1distill.train.rl -c RECIPE   several, DeepSpeed from `rl.deepspeed`
    r1distill submit rl -c RECIPE --nodes 2 --gpus-per-node 8             a Slurm job, one accelerate per node
    r1distill rl -c RECIPE --select-only                                  only the pass-rate selection

The policy starts from the sft output (RUN_DIR/sft; RUN_DIR/distill when the recipe has distill) unless `rl.model`
names another model. Prompts with references
come from `rl.sources` (generate's source spec), rendered with the student's chat template plus the `<think>`
prefill, exactly as generate renders them. Rewards (`rl.rewards`, see `r1distill.train.rewards`) are the grader verify
uses, the think-format check, DAPO's soft overlong penalty and a repetition penalty, weighted. `rl.selection`
keeps only prompts the student solves sometimes (see `r1distill.train.selection`). `rl.trl` goes to `trl.GRPOConfig`
untouched: on GPUs set `use_vllm: true` and `vllm_mode: colocate` (or `server`, with `trl vllm-serve` running); on
CPU the trainer generates with transformers. The output folder is the trained model; a rerun resumes from the newest
complete checkpoint in OUTPUT/checkpoints; manifest.json is written last.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from r1distill.core.config import ConfigError, config_hash
from r1distill.core.models import load_tokenizer
from r1distill.core.stage import Stage
from r1distill.core.store import StageError, manifest_hash
from r1distill.generate.prompts import Prompt, SourceConfig
from r1distill.grading.grader import Grader
from r1distill.train import common as training
from r1distill.train import rewards, selection
from r1distill.train.prompts import build_dataset, generate_config, load_prompts
from r1distill.train.rewards import DEFAULT_WEIGHTS
from r1distill.train.selection import SelectionConfig

log = logging.getLogger(__name__)

# Kept over TRL's defaults unless the recipe sets them: frequent enough checkpoints to resume a long run.
TRL_DEFAULTS = {"save_steps": 100, "save_total_limit": 2}


@dataclass
class RLStageConfig:
    """The recipe's `rl:` section (see the module docstring).

    `model`: None starts from the run's sft output; else a folder, a Hub id or bundled:smollm2.
    `rewards`: name -> weight, or name -> {weight, settings...}; weight 0 switches a reward off.
    `lenient_think`, `math_timeout_s`, `workers`: the grader's settings (as in evaluate), for rewards and selection.
    """

    HASH_EXCLUDE = ("workers", "select_only")

    model: str | None = None
    sources: list[SourceConfig] = field(default_factory=list)
    limit: int | None = None
    system_prompt: str | None = None
    prompt_template: str = "{problem}"
    prefill: str = "<think>\n"
    rewards: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    selection: SelectionConfig | None = None
    trl: dict[str, Any] = field(default_factory=dict)
    peft: dict[str, Any] | None = None
    deepspeed: str | None = None
    lenient_think: bool = False
    math_timeout_s: float = 5.0
    workers: int = 2
    select_only: bool = False


Config = RLStageConfig


def policy_model(cfg, input_dir: Path | None) -> str:
    """The model rl starts from: `rl.model`, or the finished folder of the training stage before it."""
    return training.start_model(cfg.model, input_dir, "rl")


def _select(cfg: RLStageConfig, gen, model: str, prompts: list[Prompt], output_dir: Path, grader) -> list[dict]:
    """Pass-rate rows: measured by rank 0 (one engine), read by the other ranks after a barrier."""
    grading = {"lenient_think": cfg.lenient_think, "math_timeout_s": cfg.math_timeout_s}
    if training.is_main_process():
        rows = selection.run(cfg.selection, gen, model, prompts, output_dir, grader, grading)
    training.barrier()
    if not training.is_main_process():
        rows = selection.read(output_dir, selection.selection_hash(cfg.selection, gen, model, grading))
        if rows is None:
            raise StageError(f"rl.selection: {output_dir / selection.FILE} is missing after rank 0 wrote it")
    return rows


def validate(cfg: RLStageConfig) -> None:
    """The checks that need no model and no data (also for `r1distill run --dry-run`): rewards, their weights."""
    from trl import GRPOConfig

    if "reward_weights" in cfg.trl:
        raise ConfigError("rl.trl.reward_weights: give the weights in rl.rewards (name: weight)")
    training.validate(cfg, "rl", GRPOConfig)
    default = GRPOConfig.__dataclass_fields__["max_completion_length"].default
    rewards.check(cfg.rewards, "rl.rewards", max_tokens=cfg.trl.get("max_completion_length", default))


class RLStage(Stage):
    name, Config, upstream, needs_input, distributed = "rl", RLStageConfig, "sft", False, True
    input_key = "model"
    reads_model = True  # after on-policy distillation when the recipe has it

    def input_stage(self, recipe: Any) -> str | None:
        stage = super().input_stage(recipe)
        return "distill" if stage and "distill" in recipe.data else stage  # after on-policy distillation, if any

    def validate(self, cfg: RLStageConfig) -> None:
        validate(cfg)

    def describe(self, cfg: RLStageConfig, inp, recipe) -> list[tuple[str, str]]:
        from r1distill.pipeline import describe

        return [
            *describe.training_lines(self.name, cfg, inp, recipe),
            *[("prompts", describe.source_text(src)) for src in cfg.sources],
            ("rewards", ", ".join(f"{k} x {v}" for k, v in cfg.rewards.items())),
        ]

    def work(self, cfg: RLStageConfig, input_dir, output_dir: Path, prepared, force: bool = False, **kw) -> dict | None:
        """Select prompts (optional), train with GRPO, save the model; the manifest body on rank 0."""
        return _train(cfg, input_dir, output_dir, force)

    def summary(self, manifest: dict[str, Any]) -> str:
        """One line for `r1distill run`: steps, prompts, reward (and each reward) and KL from first to last step."""
        if not manifest:
            return "not finished"
        num = training.num

        parts = [f"{manifest.get('steps')} GRPO steps on {manifest.get('train_prompts')} prompts"]
        sel = manifest.get("selection")
        if sel:
            parts[0] += f" (selected {sel['kept']} of {sel['measured']} by pass rate)"
        parts.append(f"reward {num(manifest.get('reward_first'))} -> {num(manifest.get('reward_last'))}")
        first, last = manifest.get("rewards_first") or {}, manifest.get("rewards_last") or {}
        parts += [f"{name} {num(first.get(name))} -> {num(last.get(name))}" for name in last]
        if manifest.get("kl_last") is not None:
            parts.append(f"kl {num(manifest.get('kl_first'))} -> {num(manifest.get('kl_last'))}")
        return ", ".join(parts)


def _train(cfg: RLStageConfig, input_dir: Path | None, output_dir: Path, force: bool) -> dict[str, Any] | None:
    from trl import GRPOConfig, GRPOTrainer

    model = policy_model(cfg, input_dir)
    prompts = load_prompts(cfg)
    deepspeed = training.deepspeed_config(cfg.deepspeed, "rl.deepspeed")
    args = training.trainer_args(GRPOConfig, cfg.trl, output_dir, deepspeed, "rl.trl", **TRL_DEFAULTS)
    _ = args.device  # joins the process group now (DeepSpeed/DDP), so the barriers below see every rank
    lora = training.lora_config(cfg.peft, "rl.peft")
    tok = load_tokenizer(model, "rl.model")
    gen = generate_config(cfg, model)
    grader = None
    if rewards.uses_grader(cfg.rewards) or cfg.selection:
        grader = Grader(math_timeout_s=cfg.math_timeout_s, workers=cfg.workers, lenient_think=cfg.lenient_think)
    try:
        funcs, weights = rewards.build(
            cfg.rewards, "rl.rewards", grader=grader, prefill=cfg.prefill, max_tokens=args.max_completion_length
        )
        args.reward_weights = weights
        rows = None
        if cfg.selection:
            rows = _select(cfg, gen, model, prompts, output_dir, grader)
            if cfg.select_only:
                training.finish_distributed()
                return None
            train_prompts = selection.kept_prompts(prompts, rows)
        elif cfg.select_only:
            raise StageError("rl: --select-only needs an rl.selection section")
        else:
            train_prompts = prompts
        dataset = build_dataset(train_prompts, gen, tok)
        run_key = {"config_hash": config_hash(cfg), "input_hash": manifest_hash(input_dir) if input_dir else None}
        training.check_resume(output_dir, run_key, force, "rl")
        trainer = GRPOTrainer(
            model=model, reward_funcs=funcs, args=args, train_dataset=dataset, processing_class=tok, peft_config=lora
        )
        resume = training.last_checkpoint(output_dir)
        if resume:
            log.info("rl: resuming from %s", resume)
        t0 = time.monotonic()
        trainer.train(resume_from_checkpoint=resume)
        wall = time.monotonic() - t0
    finally:
        if grader is not None:
            grader.close()
    results = train_summary(trainer.state.log_history, trainer.state.global_step, wall, resume)
    results["world_size"] = args.world_size
    card = training.model_card(
        f"{output_dir.name}: GRPO of {cfg.model or model}", cfg.model or model, _prompts_description(cfg), None,
        asdict(cfg), {k: results[k] for k in ("steps", "reward_first", "reward_last")},
    )  # fmt: skip
    training.save_final(trainer, tok, output_dir, card, base_model=model if lora else None)
    fields = None
    if training.is_main_process():
        fields = {
            "base_model": cfg.model or model,
            "prompts": len(prompts),
            "train_prompts": len(train_prompts),
            "selection": selection.summary(rows) if rows is not None else None,
            "rewards": {rewards.callable_name(f): w for f, w in zip(funcs, weights, strict=True)},
            **results,
        }
    training.finish_distributed()
    return fields


def _prompts_description(cfg: RLStageConfig) -> str:
    return ", ".join(s.path or s.hub or f"builtin:{s.builtin}" for s in cfg.sources)


def train_summary(log_history: list[dict[str, Any]], steps: int, wall: float, resume: str | None) -> dict[str, Any]:
    """Steps, and the mean reward (total and per reward) and KL of the first and last logged training steps."""
    logged = [e for e in log_history if "reward" in e]
    first, last = (logged[0], logged[-1]) if logged else ({}, {})

    def components(entry: dict[str, Any]) -> dict[str, float]:
        return {k.split("/")[1]: v for k, v in entry.items() if k.startswith("rewards/") and k.endswith("/mean")}

    return {
        "steps": steps,
        "logged_steps": len(logged),
        "reward_first": first.get("reward"),
        "reward_last": last.get("reward"),
        "rewards_first": components(first),
        "rewards_last": components(last),
        "kl_first": first.get("kl"),
        "kl_last": last.get("kl"),
        "wall_s": round(wall, 1),
        "resumed_from": resume,
    }


STAGE = RLStage()
run, summary = STAGE.run, STAGE.summary


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--select-only" in argv:
        argv.remove("--select-only")
        argv.append("rl.select_only=true")
    return STAGE.main(argv)


if __name__ == "__main__":
    sys.exit(main())
