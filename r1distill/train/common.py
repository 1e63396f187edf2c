"""What sft and rl share: TRL arguments from the recipe, the shipped ZeRO configs, LoRA, checkpoints, the final save.

A training stage's output folder is itself the trained model (config, weights, tokenizer, generation config, a
model card), with `checkpoints/` inside for resume and `manifest.json` written last, so `from_pretrained(RUN_DIR/sft)`
works and a folder without a manifest is known to be unfinished.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

from r1distill.core.config import ConfigError
from r1distill.core.store import StageError, move_into, read_manifest

log = logging.getLogger(__name__)

DEEPSPEED_DIR = Path(__file__).parent / "deepspeed"
CHECKPOINTS = "checkpoints"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def deepspeed_names() -> list[str]:
    return sorted(p.stem for p in DEEPSPEED_DIR.glob("*.json"))


def deepspeed_config(name: str | None, where: str) -> str | None:
    """The DeepSpeed JSON for `deepspeed:` in a recipe: a shipped name (zero2, zero3, zero3_offload) or a path."""
    if not name:
        return None
    shipped = DEEPSPEED_DIR / f"{name}.json"
    if shipped.exists():
        return str(shipped)
    path = Path(name).expanduser()
    if path.suffix == ".json" and path.exists():
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{where}: {path} is not valid JSON: {e}") from None
        return str(path.resolve())
    raise ConfigError(f"{where}: {name!r} is neither a shipped config ({', '.join(deepspeed_names())}) nor a JSON file")


def on_cpu() -> bool:
    import torch

    return not torch.cuda.is_available()


def trainer_args(cls: type, trl: dict[str, Any], output_dir: Path, deepspeed: str | None, where: str, **defaults):
    """`cls(**trl)` (SFTConfig, GRPOConfig) with the folder, ZeRO config and CPU switch filled in.

    `defaults` apply unless the recipe sets the key. An unknown key is a one-line error naming it: the recipe's
    `trl:` section is TRL's own argument set, passed through, never mirrored.
    """
    check_keys(cls, trl, where)
    kwargs = {"report_to": "none", "logging_steps": 1, "save_strategy": "steps", **defaults, **trl}
    kwargs["output_dir"] = str(output_dir / CHECKPOINTS)
    if deepspeed:
        kwargs["deepspeed"] = deepspeed
    if on_cpu():
        # TRL defaults to bf16 mixed precision, which the CPU trainer refuses; DeepSpeed then runs on gloo.
        kwargs.update(use_cpu=True, bf16=False, fp16=False)
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
        if deepspeed and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # With use_cpu the Trainer opens the process group itself, behind DeepSpeed's back, and DeepSpeed then
            # counts a world of 1 ("train_batch_size is not equal to ..."): let DeepSpeed open it first.
            import deepspeed as ds

            ds.init_distributed(dist_backend="gloo")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: {cls.__name__} refused the settings: {e}") from None


def check_keys(cls: type, given: dict[str, Any], where: str) -> None:
    """Settings passed to an upstream dataclass (SFTConfig, GRPOConfig, LoraConfig) must be its fields, each of a
    type its annotation allows.

    The dataclasses themselves accept anything (`num_train_epochs="two"` constructs fine) and the wrong type only
    surfaces as a traceback deep in the Trainer or PEFT, after the model has loaded, so each given value is checked
    against the field's own type hint here (pydantic, strict: no "16" for an int), naming the recipe key.
    """
    unknown = sorted(set(given) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ConfigError(f"{where}: unknown {cls.__name__} argument {unknown[0]!r} (see the {cls.__name__} docs)")
    for key, value in given.items():
        problem = _type_problem(cls, key, value)
        if problem:
            hint = " (YAML reads 4e-5 as text: write 4.0e-5)" if isinstance(value, str) and _number(value) else ""
            raise ConfigError(f"{where}.{key}: {value!r} is not {problem} ({cls.__name__}.{key}){hint}")


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _type_problem(cls: type, key: str, value: Any) -> str | None:
    """What `value` should be for `cls.key` ("a valid integer", ...), or None when it fits or cannot be judged."""
    import typing

    import pydantic

    try:
        hint = typing.get_type_hints(cls)[key]
        adapter = pydantic.TypeAdapter(hint, config=pydantic.ConfigDict(arbitrary_types_allowed=True))
    except Exception:  # an annotation pydantic cannot model (forward refs, exotic types): leave it to the library
        return None
    try:
        adapter.validate_python(value, strict=True)
    except pydantic.ValidationError as e:
        return e.errors()[0]["msg"].replace("Input should be ", "")
    return None


def validate(cfg: Any, stage: str, trl_cls: type) -> None:
    """What sft and rl can check without a model (also for `r1distill run --dry-run`): the ZeRO config, and that
    `trl:` and `peft:` hold only their classes' fields."""
    from peft import LoraConfig

    deepspeed_config(cfg.deepspeed, f"{stage}.deepspeed")
    check_keys(trl_cls, cfg.trl, f"{stage}.trl")
    if cfg.peft:
        check_keys(LoraConfig, cfg.peft, f"{stage}.peft")


def lora_config(peft: dict[str, Any] | None, where: str):
    """`peft.LoraConfig(**peft)` with task_type CAUSAL_LM, or None when the recipe has no `peft:` section."""
    if not peft:
        return None
    from peft import LoraConfig

    settings = {"task_type": "CAUSAL_LM", **peft}
    check_keys(LoraConfig, peft, where)
    try:
        return LoraConfig(**settings)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{where}: LoraConfig refused the settings: {e}") from None


def last_checkpoint(output_dir: Path) -> str | None:
    """The newest complete checkpoint under OUTPUT/checkpoints, or None.

    The Trainer writes `trainer_state.json` last into a checkpoint, so a folder without a readable one was cut off
    mid-save (a kill) and is skipped in favour of the one before it.
    """
    root = Path(output_dir) / CHECKPOINTS
    if not root.is_dir():
        return None
    found = sorted(((int(m.group(1)), p) for p in root.iterdir() if (m := _CKPT.match(p.name))), reverse=True)
    for _step, path in found:
        try:
            json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            log.warning("%s: incomplete checkpoint (no readable trainer_state.json), skipped", path)
            continue
        return str(path)
    return None


RUN_KEY = "r1distill-run.json"  # in OUTPUT/checkpoints: which config and input the checkpoints belong to


def check_resume(output_dir: Path, run_key: dict[str, Any], force: bool, stage: str) -> None:
    """Checkpoints made with another config or input must not be resumed; `force` starts over (rank 0 clears)."""
    ckpts = Path(output_dir) / CHECKPOINTS
    state = ckpts / RUN_KEY
    if force and is_main_process():
        shutil.rmtree(ckpts, ignore_errors=True)
        (Path(output_dir) / "manifest.json").unlink(missing_ok=True)
    elif state.exists() and json.loads(state.read_text()) != run_key:
        raise StageError(
            f"{output_dir}: its checkpoints come from another {stage} config or input; use another --output or "
            "--force to start over"
        )
    barrier()
    if is_main_process():
        ckpts.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps(run_key))


def start_model(model: str | None, input_dir: Path | None, stage: str) -> str:
    """The model a training stage continues from: `<stage>.model`, or the finished training folder it reads."""
    from r1distill.core.models import resolve_model

    if model:
        return resolve_model(model)
    if input_dir is None or not read_manifest(input_dir):
        raise StageError(
            f"{stage}: {input_dir} holds no finished {_trained_by(input_dir)} run (no "
            f"manifest.json); run that stage first, or set {stage}.model to a model folder, a Hub id or bundled:smollm2"
        )
    return str(input_dir)


def _trained_by(folder: Path | None) -> str:
    """Which training stage a run-dir folder is by its name (sft when it is not one)."""
    from r1distill.core.registry import LAUNCHED

    return folder.name if folder is not None and Path(folder).name in LAUNCHED else "sft"


def _state():
    from accelerate import PartialState

    return PartialState()


def is_main_process() -> bool:
    """Rank 0 of the training job (accelerate's view; the trainer has opened the process group by then)."""
    return _state().is_main_process


def barrier() -> None:
    _state().wait_for_everyone()


def finish_distributed() -> None:
    """End a multi-process run cleanly (gloo/NCCL abort at interpreter exit otherwise)."""
    state = _state()
    if state.num_processes > 1:
        state.wait_for_everyone()
        state.destroy_process_group()


def save_final(
    trainer, tokenizer, output_dir: Path, card: str, base_model: str | None = None, model_config: dict | None = None
) -> None:
    """Save model, tokenizer, generation config, trainer state and card into `output_dir` itself.

    Every rank takes part (ZeRO-3 gathers the weights); the files land in a temp folder first and rank 0 moves them
    into place, so a kill mid-save never leaves a half-written model looking complete (the manifest comes after).
    With LoRA (`base_model` given and an adapter saved) the folder holds the merged model, so vLLM, evaluate and rl
    load it like any other, and the adapter itself goes to `adapter/`. `model_config` (sft.model_config) is applied
    to the base before the merge, as it was for training.
    """
    output_dir = Path(output_dir)
    staging = output_dir / ".saving"
    if is_main_process() and staging.exists():
        shutil.rmtree(staging)
    barrier()
    trainer.save_model(str(staging))  # with LoRA: the adapter in PEFT's format, loadable by from_pretrained
    barrier()
    if not is_main_process():
        return
    if base_model and (staging / "adapter_config.json").exists():
        _merge_adapter(staging, base_model, model_config)
    tokenizer.save_pretrained(staging)
    trainer.state.save_to_json(str(staging / "trainer_state.json"))
    (staging / "README.md").write_text(card, encoding="utf-8")
    move_into(staging, output_dir)
    staging.rmdir()


def _merge_adapter(folder: Path, base_model: str, model_config: dict | None = None) -> None:
    """Move the PEFT adapter in `folder` to `folder/adapter` and write base + adapter merged into `folder`."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = folder / "adapter"
    adapter.mkdir()
    for path in list(folder.iterdir()):
        if path.is_file() and (path.name.startswith("adapter_") or path.name == "README.md"):
            os.replace(path, adapter / path.name)
    from r1distill.train.context import load_config

    config = load_config(base_model, model_config)
    base = AutoModelForCausalLM.from_pretrained(base_model, dtype="auto", **({"config": config} if config else {}))
    merged = PeftModel.from_pretrained(base, str(adapter)).merge_and_unload()
    merged.save_pretrained(folder)
    log.info("LoRA merged into %s (adapter kept in %s)", folder, adapter)


def num(x: Any) -> str:
    """A figure in a summary line: three decimals, or '-' when the run logged none."""
    return "-" if x is None else f"{x:.3f}"


def loss_history(output_dir: Path) -> list[dict[str, Any]]:
    """The logged steps (loss, learning rate, ...) from the saved trainer state; [] when there is none."""
    path = Path(output_dir) / "trainer_state.json"
    if not path.exists():
        return []
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("log_history", [])
    except json.JSONDecodeError as e:
        raise StageError(f"{path}: unreadable trainer state ({e})") from None


def model_card(
    title: str, base_model: str, dataset: str, dataset_card_hash: str | None, config: dict, results: dict
) -> str:
    """A Hub model card (huggingface_hub's `ModelCard`): what was trained, from what, on which dataset (and its
    card's hash), with which config. Models are named by the recipe's reference (a Hub id, `bundled:smollm2`)."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(base_model=base_model, library_name="transformers", tags=["r1distill", "reasoning"])
    body = [
        f"# {title}",
        "",
        f"Fine-tuned from `{base_model}` by [r1distill](https://github.com/r1distill/r1distill).",
        "",
        f"- dataset: `{dataset}`" + (f" (card sha256 `{dataset_card_hash}`)" if dataset_card_hash else ""),
        *(f"- {k}: {v}" for k, v in results.items()),
        "",
        "## Training config",
        "",
        "```json",
        json.dumps(config, indent=2, sort_keys=True, default=str),
        "```",
        "",
    ]
    return str(ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body)))
