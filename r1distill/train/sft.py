"""sft: fine-tune a student on the built dataset with TRL's SFTTrainer (+ DeepSpeed ZeRO, LoRA, soft labels).

    r1distill sft -c RECIPE                                               one process
    accelerate launch --num_processes 8 --module r1distill.train.sft -c RECIPE  several, DeepSpeed from `sft.deepspeed`
    r1distill submit sft -c RECIPE --nodes 4 --gpus-per-node 8            a Slurm job, one accelerate per node
    r1distill sft -c RECIPE --preflight-only                              only the chat-template checks

The recipe's `trl:` goes to `trl.SFTConfig`, `peft:` to `peft.LoraConfig`, `deepspeed:` names a shipped ZeRO config
(zero2, zero3, zero3_offload) or a JSON file. The output folder is the trained model itself; a rerun continues from
the newest complete checkpoint in OUTPUT/checkpoints.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

from r1distill.core.config import config_hash, load_recipe
from r1distill.core.models import BUNDLED, load_tokenizer, resolve_model
from r1distill.core.stage import Stage, setup_logging
from r1distill.core.store import StageError, manifest_hash, read_manifest
from r1distill.train import common as training
from r1distill.train import context
from r1distill.train.sft_dataset import load_splits, trainable

log = logging.getLogger(__name__)

# What R1-distill SFT needs unless the recipe says otherwise: loss on the assistant turn (reasoning, answer, EOS).
TRL_DEFAULTS = {"assistant_only_loss": True, "save_steps": 500, "save_total_limit": 2}


@dataclass
class SFTStageConfig:
    """The recipe's `sft:` section (see the module docstring). `dataset`: None trains on the run's build folder;
    otherwise a build folder, a folder of parquet/JSONL files, or a Hub dataset id with a `messages` column."""

    model: str = BUNDLED
    dataset: str | None = None
    chat_template: str | None = None
    deepspeed: str | None = None
    trl: dict[str, Any] = field(default_factory=dict)
    peft: dict[str, Any] | None = None
    kd: dict[str, Any] | None = None
    preflight: bool = True
    # Set on the student's config before it loads, e.g. {rope_theta: 300000, max_position_embeddings: 32768} to
    # train a 4k-context base at 32k (train/context.py); the trained model keeps them.
    model_config: dict[str, Any] | None = None


Config = SFTStageConfig


def validate(cfg: SFTStageConfig) -> None:
    """Checks that need no model and no data (`r1distill run --dry-run`): ZeRO config, TRL/LoRA keys, template."""
    from trl import SFTConfig

    from r1distill.train import preflight

    training.validate(cfg, "sft", SFTConfig)
    if cfg.chat_template:
        preflight.template_path(cfg.chat_template, "sft.chat_template")
    if cfg.model_config is not None and not isinstance(cfg.model_config, dict):
        raise StageError("sft.model_config: expected a mapping of config fields, e.g. {rope_theta: 300000}")
    defaults = {f.name: f.default for f in dataclass_fields(SFTConfig)}
    trl = {**defaults, **cfg.trl}
    context.check(cfg.model, cfg.model_config, trl["max_length"], bool(trl["packing"]), None)


def prepare_tokenizer(cfg: SFTStageConfig, student: str, args, first_row: list[dict] | None, gen_config=None):
    """The student's tokenizer with the recipe's template, checked by the preflight on a real row."""
    from r1distill.train import preflight

    tok = load_tokenizer(student, "sft.model")
    tok = preflight.prepare_tokenizer(tok, cfg.chat_template, "sft.chat_template")
    if cfg.preflight and first_row is not None:
        report = preflight.check(
            tok, first_row, pad_token=args.pad_token, eos_token=args.eos_token, generation_config=gen_config,
            max_length=None if args.packing else args.max_length, where="sft",
        )  # fmt: skip
        log.info("preflight:\n%s", report.summary())
        report.raise_if_failed()
    return tok


def _generation_config(student: str):
    from transformers import GenerationConfig

    try:
        return GenerationConfig.from_pretrained(student)
    except OSError:
        return None


@dataclass
class Prepared:
    """A ready trainer and what the final save and the manifest need to know about it."""

    trainer: Any
    tokenizer: Any
    student: str
    lora: bool
    described: dict[str, Any]
    train_rows: int


def prepare(cfg: SFTStageConfig, input_dir: Path | None, output_dir: Path, force: bool = False) -> Prepared:
    """Everything before the first step: arguments, dataset, tokenizer + preflight, resume check, the trainer."""
    from trl import SFTConfig, SFTTrainer

    output_dir = Path(output_dir)
    input_dir = Path(input_dir) if input_dir else None
    student = resolve_model(cfg.model)
    deepspeed = training.deepspeed_config(cfg.deepspeed, "sft.deepspeed")
    args = training.trainer_args(SFTConfig, cfg.trl, output_dir, deepspeed, "sft.trl", **TRL_DEFAULTS)
    _check_context(cfg, student, args, input_dir)
    _ = args.device  # joins the process group now (DeepSpeed/DDP), so the barriers below see every rank
    lora = training.lora_config(cfg.peft, "sft.peft")
    train, evaluation, described = load_splits(cfg, input_dir)
    if not len(train):
        raise StageError(f"sft: {described['dataset']} has no training rows")
    tok = prepare_tokenizer(cfg, student, args, train[0]["messages"], _generation_config(student))
    train, evaluation = trainable(train, bool(cfg.kd)), trainable(evaluation, bool(cfg.kd))
    if evaluation is not None and args.eval_strategy == "no":
        evaluation = None  # it would be tokenised for nothing
    run_key = {"config_hash": config_hash(cfg), "input_hash": manifest_hash(input_dir) if input_dir else None}
    training.check_resume(output_dir, run_key, force, "sft")

    trainer_cls, extra = SFTTrainer, {}
    if cfg.kd:
        from r1distill.train import kd

        trainer_cls, train, evaluation, extra = kd.setup(
            cfg.kd, where="sft.kd", tokenizer=tok, student=student, input_dir=input_dir,
            train=train, eval=evaluation, args=args,
        )  # fmt: skip
    trainer = trainer_cls(
        model=student, args=args, train_dataset=train, eval_dataset=evaluation, processing_class=tok,
        peft_config=lora, **extra,
    )  # fmt: skip
    return Prepared(trainer, tok, student, lora is not None, described, len(train))


def _check_context(cfg: SFTStageConfig, student: str, args, input_dir: Path | None) -> None:
    """Refuse before the model loads when `max_length` (or the longest built row) exceeds the student's context,
    and hand TRL the student's config with `sft.model_config` applied."""
    from transformers import AutoConfig

    try:
        hf = AutoConfig.from_pretrained(student)
    except (OSError, ValueError) as e:
        raise StageError(f"sft.model: cannot read the config of {student}: {e}") from None
    build = read_manifest(input_dir) if input_dir and not cfg.dataset else None
    longest = ((build or {}).get("lengths") or {}).get("train", {}).get("max")
    context.check(cfg.model, cfg.model_config, args.max_length, args.packing, longest, config=hf.to_dict())
    if cfg.model_config:
        args.model_init_kwargs = {
            **(args.model_init_kwargs or {}),
            "config": context.apply_overrides(hf, cfg.model_config),
        }
        log.info("sft.model_config: %s applied to %s's config", cfg.model_config, cfg.model)


class SFTStage(Stage):
    name, Config, upstream, needs_input, distributed = "sft", SFTStageConfig, "build", False, True
    input_key = "dataset"

    def validate(self, cfg: SFTStageConfig) -> None:
        validate(cfg)

    def describe(self, cfg: SFTStageConfig, inp, recipe) -> list[tuple[str, str]]:
        from r1distill.pipeline import describe

        return describe.training_lines(self.name, cfg, inp, recipe) + [("data", str(cfg.dataset or inp))]

    def work(
        self, cfg: SFTStageConfig, input_dir, output_dir: Path, prepared, force: bool = False, **kw
    ) -> dict | None:
        """Train (resuming from the newest complete checkpoint) and save the model into `output_dir`; returns the
        manifest body on rank 0."""
        job = prepare(cfg, input_dir, output_dir, force)
        resume = training.last_checkpoint(output_dir)
        if resume:
            log.info("sft: resuming from %s", resume)
        t0 = time.monotonic()
        job.trainer.train(resume_from_checkpoint=resume)
        summary = _train_summary(job.trainer, time.monotonic() - t0, resume)
        if cfg.model_config:
            summary["model_config_overrides"] = cfg.model_config
        card = training.model_card(
            f"{output_dir.name}: SFT of {cfg.model}", cfg.model, job.described["dataset"],
            job.described.get("dataset_card_sha256"), asdict(cfg), summary,
        )  # fmt: skip
        base = job.student if job.lora else None
        overrides = cfg.model_config
        training.save_final(job.trainer, job.tokenizer, output_dir, card, base_model=base, model_config=overrides)
        fields = None
        if training.is_main_process():
            _fix_generation_config(output_dir, job.tokenizer)
            fields = {"base_model": cfg.model, **job.described, "train_rows": job.train_rows, **summary}
        training.finish_distributed()
        return fields

    def summary(self, manifest: dict[str, Any]) -> str:
        return _describe(manifest) if manifest else "not finished"


def _train_summary(trainer, wall: float, resume: str | None) -> dict[str, Any]:
    logs = [e for e in trainer.state.log_history if "loss" in e]
    tokens = max((e.get("num_tokens", 0) for e in trainer.state.log_history), default=0)
    return {
        "steps": trainer.state.global_step,
        "first_loss": logs[0]["loss"] if logs else None,
        "train_loss": logs[-1]["loss"] if logs else None,
        "train_tokens": int(tokens),
        "wall_s": round(wall, 1),
        "train_tokens_per_s": round(tokens / wall, 1) if wall > 0 and tokens else None,
        "resumed_from": resume,
        "world_size": trainer.args.world_size,
        **_kd_summary(trainer),
    }


def _kd_summary(trainer) -> dict[str, Any]:
    """With soft labels: the share of trained tokens that had teacher data (offline), and the last mixed losses."""
    kd = getattr(trainer, "kd", None)
    if kd is None:
        return {}
    last = next((e for e in reversed(trainer.state.log_history) if "soft_loss" in e), {})
    aligned = getattr(kd.offline, "aligned_fraction", None) if kd.offline is not None else None
    parts = ("hard_loss", "soft_loss", "kd_loss", "hidden_loss")
    return {"kd": {"source": kd.config.source, "aligned_fraction": aligned, **{k: last[k] for k in parts if k in last}}}


def _fix_generation_config(output_dir: Path, tok) -> None:
    """The saved generation config must stop on the token the template ends a turn with (the tokenizer's EOS)."""
    from r1distill.train import preflight

    gen = _generation_config(str(output_dir))
    if gen is not None:
        fixed = preflight.fix_generation_config(gen, tok)
        if fixed is not gen:
            fixed.save_pretrained(output_dir)


def preflight_only(cfg: SFTStageConfig, input_dir: Path | None) -> None:
    from trl import SFTConfig

    student = resolve_model(cfg.model, tokenizer_only=True)
    args = training.trainer_args(SFTConfig, cfg.trl, Path("unused"), None, "sft.trl", **TRL_DEFAULTS)
    train, _, described = load_splits(cfg, input_dir)
    if not len(train):
        raise StageError(f"sft: {described['dataset']} has no training rows")
    prepare_tokenizer(cfg, student, args, train[0]["messages"], _generation_config(student))


def _describe(manifest: dict[str, Any]) -> str:
    speed = manifest.get("train_tokens_per_s")
    return (
        f"{manifest.get('steps')} steps on {manifest.get('train_rows')} rows, loss {_num(manifest.get('first_loss'))}"
        f" -> {_num(manifest.get('train_loss'))}" + (f", {speed:.0f} train tok/s" if speed else "")
    )


def _preflight_main(argv: list[str]) -> int:
    """`--preflight-only`: the template checks on the real dataset, then exit (0: ready to train, 2: not)."""
    args = STAGE.parser(__doc__).parse_intermixed_args(argv)
    setup_logging(args.verbose)
    try:
        recipe = load_recipe(args.config, args.overrides)
        input_dir, _ = STAGE.resolve_dirs(recipe, args.input, args.output)
        preflight_only(recipe.section("sft", Config), input_dir)
    except StageError as e:
        print(f"r1distill sft: preflight failed: {e}", file=sys.stderr)
        return 2
    print("r1distill sft: preflight passed", file=sys.stderr)
    return 0


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


STAGE = SFTStage()
run, summary = STAGE.run, STAGE.summary


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--preflight-only" in argv:
        argv.remove("--preflight-only")
        return _preflight_main(argv)
    return STAGE.main(argv)


if __name__ == "__main__":
    sys.exit(main())
