"""distill: on-policy distillation after sft (TRL's DistillationTrainer): the student samples, the teacher scores the
student's own tokens, the loss is the per-token divergence (reverse KL by default).

    r1distill distill -c RECIPE                                                one process
    accelerate launch --num_processes 8 --module r1distill.train.distill -c RECIPE   several (ZeRO: distill.deepspeed)
    r1distill submit distill -c RECIPE --nodes 2 --gpus-per-node 8             a Slurm job, one accelerate per node

The student starts from the sft output (RUN_DIR/sft) unless `distill.model` names another model. Prompts come from
`distill.sources` (generate's source spec; no reference answers needed), rendered with the student's chat template
and the `<think>` prefill exactly as generate renders them. `distill.teacher` is a model (a folder, a Hub id or
bundled:smollm2), loaded beside the student with its full next-token distribution, or the URL of a vLLM server
serving it (`http://host:port`; TRL's ServerDistillationTrainer, which asks the server for prompt logprobs of the
student's sequences, top-1 with a tail bucket for reverse KL). Teacher and student must share one vocabulary: this is
checked before any model is loaded. `distill.trl` goes to `trl.DistillationConfig` (`ServerDistillationConfig` for a
server teacher) untouched: `beta` 1.0 is reverse KL, 0.0 forward KL; on GPUs `use_vllm` defaults to true (colocated
student generation). The output folder is the trained model; a rerun resumes from the newest complete checkpoint in
OUTPUT/checkpoints; manifest.json is written last.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from r1distill.core.config import ConfigError, config_hash
from r1distill.core.models import BUNDLED, load_tokenizer, resolve_model
from r1distill.core.stage import Stage
from r1distill.core.store import StageError, manifest_hash
from r1distill.generate import stage as generate
from r1distill.generate.prompts import Prompt, SourceConfig
from r1distill.generate.prompts import load_prompts as load_prompts_from
from r1distill.train import common as training
from r1distill.train import prompts as train_prompts

log = logging.getLogger(__name__)

# Kept over TRL's defaults unless the recipe sets them: frequent enough checkpoints to resume a long run.
TRL_DEFAULTS = {"save_steps": 100, "save_total_limit": 2}
# On GPUs the student samples with a colocated vLLM engine (TRL's transformers generation is far slower).
GPU_DEFAULTS = {"use_vllm": True, "vllm_mode": "colocate"}
# A text whose token ids must agree between student and a server teacher (the server exposes no vocabulary).
_PROBE = "<|im_start|>user\nWhat is 12 + 30? Think, then answer in \\boxed{}.<|im_end|>\n<think>\n"


@dataclass
class DistillStageConfig:
    """The recipe's `distill:` section (see the module docstring).

    `model`: None starts from the run's sft output; else a folder, a Hub id or bundled:smollm2.
    `teacher`: a model (folder, Hub id, bundled:smollm2) or a vLLM server URL (http://host:port).
    """

    model: str | None = None
    teacher: str = BUNDLED
    sources: list[SourceConfig] = field(default_factory=list)
    limit: int | None = None
    system_prompt: str | None = None
    prompt_template: str = "{problem}"
    prefill: str = "<think>\n"
    trl: dict[str, Any] = field(default_factory=dict)
    peft: dict[str, Any] | None = None
    deepspeed: str | None = None


Config = DistillStageConfig


def is_server(teacher: str) -> bool:
    return teacher.startswith(("http://", "https://"))


def config_class(cfg: DistillStageConfig) -> type:
    """DistillationConfig, or ServerDistillationConfig (TRL experimental) for a teacher on a vLLM server."""
    if is_server(cfg.teacher):
        from trl.experimental.server_distillation import ServerDistillationConfig

        return ServerDistillationConfig
    from trl import DistillationConfig

    return DistillationConfig


def validate(cfg: DistillStageConfig) -> None:
    """The checks that need no model and no data (also for `r1distill run --dry-run`)."""
    for key in ("teacher_model_name_or_path", "teacher_model_server_url"):
        if key in cfg.trl:
            raise ConfigError(f"distill.trl.{key}: name the teacher in distill.teacher (a model or a server URL)")
    if not cfg.sources:
        raise ConfigError("distill.sources: on-policy distillation needs prompts (generate's source spec)")
    training.validate(cfg, "distill", config_class(cfg))


def student_model(cfg, input_dir: Path | None) -> str:
    """The model distill starts from: `distill.model`, or the finished folder of the training stage before it."""
    return training.start_model(cfg.model, input_dir, "distill")


def check_vocabulary(student_tok: Any, teacher: str) -> None:
    """Refuse a teacher whose vocabulary is not the student's: the divergence compares next-token distributions
    token id by token id. A local teacher's tokenizer must map every token to the same id; a server teacher must
    tokenise a probe text to the same ids (a vLLM server exposes no vocabulary)."""
    hint = (
        "distill needs a teacher with the student's tokenizer (its model family); for a teacher with another "
        "vocabulary use data distillation (generate + sft)"
    )
    if is_server(teacher):
        url = teacher.rstrip("/").removesuffix("/v1")
        try:
            with urllib.request.urlopen(f"{url}/v1/models", timeout=30) as r:
                served = json.load(r)["data"][0]["id"]
            body = json.dumps({"model": served, "prompt": _PROBE, "add_special_tokens": False}).encode()
            req = urllib.request.Request(f"{url}/tokenize", body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=30) as r:
                theirs = json.load(r)["tokens"]
        except (OSError, urllib.error.URLError, KeyError, ValueError) as e:
            raise StageError(f"distill.teacher {teacher!r}: no vLLM server answers there ({e})") from None
        ours = student_tok(_PROBE, add_special_tokens=False).input_ids
        if theirs != ours:
            raise StageError(f"distill.teacher {teacher!r}: the served model tokenises text differently; {hint}")
        return
    teacher_tok = load_tokenizer(teacher, "distill.teacher")
    if teacher_tok.get_vocab() != student_tok.get_vocab():
        raise StageError(
            f"distill.teacher {teacher!r}: its vocabulary ({len(teacher_tok)} tokens) is not the student's "
            f"({len(student_tok)}); {hint}"
        )


def build_dataset(prompts: list[Prompt], gen: generate.GenerateConfig, tokenizer: Any):
    """The prompts as TRL's text-prompt dataset (template + prefill, as generate renders them; see train/prompts)."""
    return train_prompts.build_dataset(prompts, gen, tokenizer, where="distill")


def _defaults() -> dict[str, Any]:
    defaults = dict(TRL_DEFAULTS)
    if not training.on_cpu() and importlib.util.find_spec("vllm") is not None:
        defaults.update(GPU_DEFAULTS)
    return defaults


class DistillStage(Stage):
    name, Config, upstream, needs_input, distributed = "distill", DistillStageConfig, "sft", False, True
    input_key = "model"

    def validate(self, cfg: DistillStageConfig) -> None:
        validate(cfg)

    def describe(self, cfg: DistillStageConfig, inp, recipe) -> list[tuple[str, str]]:
        from r1distill.pipeline import describe

        return [
            *describe.training_lines(self.name, cfg, inp, recipe),
            ("teacher", cfg.teacher),
            *[("prompts", describe.source_text(src)) for src in cfg.sources],
        ]

    def work(self, cfg: DistillStageConfig, input_dir, output_dir: Path, prepared, force: bool = False, **kw):
        """Distil on-policy from the teacher, save the student; the manifest body on rank 0."""
        return _train(cfg, input_dir, output_dir, force)

    def summary(self, manifest: dict[str, Any]) -> str:
        """One line for `r1distill run`: steps, prompts, teacher, divergence from first to last step."""
        if not manifest:
            return "not finished"
        num = training.num

        where = "server" if manifest.get("teacher_server") else "in-process"
        return (
            f"{manifest.get('steps')} on-policy steps on {manifest.get('prompts')} prompts, teacher "
            f"{manifest.get('teacher')} ({where}), divergence (beta {manifest.get('beta')}) "
            f"{num(manifest.get('loss_first'))} -> {num(manifest.get('loss_last'))}"
        )


def _train(cfg: DistillStageConfig, input_dir: Path | None, output_dir: Path, force: bool) -> dict[str, Any] | None:
    model = student_model(cfg, input_dir)
    server = is_server(cfg.teacher)
    # TRL adds /v1/... itself to the server address
    teacher = cfg.teacher.rstrip("/").removesuffix("/v1") if server else resolve_model(cfg.teacher)
    tok = load_tokenizer(model, "distill.model")
    tok.padding_side = "left"
    check_vocabulary(tok, teacher)
    prompts = load_prompts_from(cfg.sources, cfg.limit, "distill.sources")
    dataset = build_dataset(prompts, train_prompts.generate_config(cfg, model), tok)
    deepspeed = training.deepspeed_config(cfg.deepspeed, "distill.deepspeed")
    defaults = {**_defaults(), **({"teacher_model_server_url": teacher} if server else {})}
    args = training.trainer_args(config_class(cfg), cfg.trl, output_dir, deepspeed, "distill.trl", **defaults)
    lora = training.lora_config(cfg.peft, "distill.peft")
    run_key = {"config_hash": config_hash(cfg), "input_hash": manifest_hash(input_dir) if input_dir else None}
    training.check_resume(output_dir, run_key, force, "distill")
    trainer = _trainer(server, model, teacher, args, dataset, tok, lora)
    resume = training.last_checkpoint(output_dir)
    if resume:
        log.info("distill: resuming from %s", resume)
    t0 = time.monotonic()
    trainer.train(resume_from_checkpoint=resume)
    results = train_summary(trainer.state.log_history, trainer.state.global_step, time.monotonic() - t0, resume)
    results["world_size"] = args.world_size
    card = training.model_card(
        f"{output_dir.name}: on-policy distillation of {cfg.model or model} from {cfg.teacher}", cfg.model or model,
        ", ".join(s.path or s.hub or f"builtin:{s.builtin}" for s in cfg.sources), None, asdict(cfg),
        {k: results[k] for k in ("steps", "loss_first", "loss_last")},
    )  # fmt: skip
    training.save_final(trainer, tok, output_dir, card, base_model=model if lora else None)
    fields = None
    if training.is_main_process():
        fields = {"base_model": cfg.model or model, "teacher": cfg.teacher, "teacher_server": server,
                  "beta": args.beta, "prompts": len(prompts), **results}  # fmt: skip
    training.finish_distributed()
    return fields


def _trainer(server: bool, model: str, teacher: str, args, dataset, tok, lora):
    """TRL's trainer: the teacher in-process (DistillationTrainer) or on a vLLM server (ServerDistillationTrainer)."""
    if server:
        from trl.experimental.server_distillation import ServerDistillationTrainer

        return ServerDistillationTrainer(
            model=model, args=args, train_dataset=dataset, processing_class=tok, peft_config=lora
        )
    from trl import DistillationTrainer

    return DistillationTrainer(
        model=model, teacher_model=teacher, args=args, train_dataset=dataset, processing_class=tok, peft_config=lora
    )


def train_summary(log_history: list[dict[str, Any]], steps: int, wall: float, resume: str | None) -> dict[str, Any]:
    """Steps, the divergence (the loss: per-token reverse KL at beta 1) and student entropy at the first and last
    logged steps, and the mean completion length."""
    logged = [e for e in log_history if "loss" in e and "train_runtime" not in e]
    first, last = (logged[0], logged[-1]) if logged else ({}, {})
    return {
        "steps": steps,
        "logged_steps": len(logged),
        "loss_first": first.get("loss"),
        "loss_last": last.get("loss"),
        "entropy_first": first.get("entropy"),
        "entropy_last": last.get("entropy"),
        "completion_length_last": last.get("completions/mean_length"),
        "wall_s": round(wall, 1),
        "resumed_from": resume,
    }


STAGE = DistillStage()
run, main, summary = STAGE.run, STAGE.main, STAGE.summary


if __name__ == "__main__":
    sys.exit(main())
