"""Can the student represent every position it is trained on? `max_length` (or the longest row) vs its context.

A base model encodes positions up to its `max_position_embeddings` at its RoPE base (`rope_theta`). Qwen2.5-Math-7B
has 4,096 positions at base 10,000; R1 traces run to 32k tokens. Training it at `max_length: 32768` as it ships
runs to the end and looks healthy, yet every position past 4k is one the model cannot encode, so the GPU-hours are
spent teaching it noise. open-r1 raised that base's RoPE frequency to 300,000 and its positions to 32,768 for
OpenR1-Distill-7B; DeepSeek's R1-Distill-Qwen-7B ships with 131,072 positions at base 10,000.

`sft.model_config:` holds such overrides, applied to the student's config before it is loaded, so the fix is one
recipe line. The check runs in `r1distill run --dry-run` where the student's config is on disk (a local folder or
the Hub cache; else `KNOWN_BASES`), and always at sft start, before the model loads.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1distill.core.config import ConfigError

log = logging.getLogger(__name__)

# Context settings of the shipped recipes' students (their config.json on the Hub), so the dry-run can check a recipe
# offline before any download. Only a fallback: a config found on disk always wins.
KNOWN_BASES: dict[str, dict[str, Any]] = {
    "qwen/qwen2.5-math-1.5b": {"max_position_embeddings": 4096, "rope_theta": 10000.0},
    "qwen/qwen2.5-math-7b": {"max_position_embeddings": 4096, "rope_theta": 10000.0},
    "open-r1/qwen2.5-math-7b-rope-300k": {"max_position_embeddings": 32768, "rope_theta": 300000.0},
    "meta-llama/llama-3.1-8b": {
        "max_position_embeddings": 131072,
        "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192},
    },
}
_SCALED = ("linear", "dynamic", "yarn", "longrope", "llama3")


@dataclass
class Context:
    """A model's positional reach: `positions` it can encode, from `max_position_embeddings` and RoPE scaling."""

    positions: int
    max_position_embeddings: int
    rope_theta: float | None
    scaling: dict[str, Any] | None
    source: str  # where the numbers come from, for messages

    def describe(self) -> str:
        rope = f", rope_theta {self.rope_theta:g}" if self.rope_theta else ""
        if self.scaling:
            rope += f", rope scaling {self.scaling.get('rope_type') or self.scaling.get('type')}"
        return f"{self.positions:,} positions (max_position_embeddings {self.max_position_embeddings:,}{rope})"


def raw_config(model: str) -> tuple[dict[str, Any] | None, str]:
    """The student's config.json as a dict, found without the network (a local folder, the Hub cache, the bundled
    model, else `KNOWN_BASES`), and where it came from; (None, why) when none is at hand."""
    from r1distill.core.models import BUNDLED, HUB_ID, bundled_ready, home

    if model in (BUNDLED, "bundled", "default"):
        path = home() / "models" / "SmolLM2-135M-Instruct" / "config.json"
        if not bundled_ready():
            return None, "the bundled model is not converted yet"
    else:
        path = Path(model).expanduser() / "config.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8")), str(path)
    if HUB_ID.match(model):
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(model, "config.json")
        if isinstance(cached, str):
            return json.loads(Path(cached).read_text(encoding="utf-8")), f"{model} (Hub cache)"
        known = KNOWN_BASES.get(model.lower())
        if known:
            return dict(known), f"{model} (its Hub config.json, as known to r1distill)"
        return None, f"{model} is not in the Hub cache"
    return None, f"{path} does not exist"


def context_of(config: dict[str, Any], source: str) -> Context | None:
    """The positions a config dict can encode; None when it names no max_position_embeddings (not a RoPE LM)."""
    config = config.get("text_config", config)  # multimodal wrappers keep the LM's settings inside
    mpe = config.get("max_position_embeddings")
    if not isinstance(mpe, int):
        return None
    rope = dict(config.get("rope_parameters") or {})
    scaling = config.get("rope_scaling") or (rope if rope.get("rope_type", "default") != "default" else None)
    theta = rope.get("rope_theta", config.get("rope_theta"))
    positions = mpe
    if scaling and (scaling.get("rope_type") or scaling.get("type")) in _SCALED and scaling.get("factor"):
        positions = max(mpe, int(scaling["factor"] * scaling.get("original_max_position_embeddings", mpe)))
    return Context(positions, mpe, theta, scaling, source)


def with_overrides(config: dict[str, Any], overrides: dict[str, Any] | None) -> dict[str, Any]:
    """A config dict with `sft.model_config` applied as `apply_overrides` applies it to the real config."""
    out = {**config, **(overrides or {})}
    if overrides and "rope_theta" in overrides and isinstance(config.get("rope_parameters"), dict):
        out["rope_parameters"] = {**config["rope_parameters"], "rope_theta": overrides["rope_theta"]}
    return out


def check(
    model: str,
    overrides: dict[str, Any] | None,
    max_length: int | None,
    packing: bool,
    longest_row: int | None,
    where: str = "sft",
    config: dict[str, Any] | None = None,
) -> Context | None:
    """Refuse (one line naming the fix) when training would use positions the student cannot encode.

    Positions used: `max_length` with packing (sequences are filled to it), else the longest row cut at
    `max_length`. `config` is the student's config.json (looked up with `raw_config` when None); returns the
    student's context, or None when its config is not at hand (the check then runs at sft start).
    """
    source = "given"
    if config is None:
        config, source = raw_config(model)
        if config is None:
            log.info("%s: context check deferred to sft start (%s)", where, source)
            return None
    native = context_of(config, source)
    ctx = context_of(with_overrides(config, overrides), source)
    if ctx is None:
        return None
    used = max_length if packing or longest_row is None else min(x for x in (max_length, longest_row) if x)
    if used is None:
        used = longest_row
    if used is None or used <= ctx.positions:
        if native and overrides and ctx.max_position_embeddings > native.positions:
            same_base = ctx.rope_theta == native.rope_theta and ctx.scaling == native.scaling
            if same_base:
                log.warning(
                    "%s.model_config raises max_position_embeddings to %d at the unchanged rope_theta %g: positions "
                    "past %d are new to the model; open-r1 also raised rope_theta (300000 for 32k)",
                    where, ctx.max_position_embeddings, ctx.rope_theta or 0, native.positions,
                )  # fmt: skip
        return ctx
    what = f"{where}.trl.max_length={max_length}" if used == max_length else f"the longest row ({used:,} tokens)"
    target = 1 << (used - 1).bit_length()
    fix = (
        f"set `{where}.model_config: {{rope_theta: 300000, max_position_embeddings: {max(target, 32768)}}}` (what "
        f"open-r1 did to train Qwen2.5-Math-7B at 32k)"
        if not overrides
        else f"raise {where}.model_config.max_position_embeddings to at least {used} (and rope_theta with it)"
    )
    raise ConfigError(
        f"{what} exceeds what {model} can encode: {ctx.describe()}, from {ctx.source}. Training would spend its "
        f"steps on positions the model cannot represent; {fix}, or lower {where}.trl.max_length to {ctx.positions}"
    )


def apply_overrides(hf_config: Any, overrides: dict[str, Any] | None, where: str = "sft.model_config") -> Any:
    """`hf_config` (a transformers PretrainedConfig) with the recipe's overrides set; returns it.

    transformers 5 keeps RoPE settings in `rope_parameters` and silently ignores a `rope_theta=` keyword to
    `from_pretrained`, so the base is written there; any other key must be a field the config already has.
    """
    for key, value in (overrides or {}).items():
        rope = getattr(hf_config, "rope_parameters", None)
        if key == "rope_theta" and isinstance(rope, dict):
            rope["rope_theta"] = value
        elif key == "rope_scaling" and isinstance(rope, dict):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.rope_scaling: expected a mapping like {{rope_type: yarn, factor: 4.0}}")
            scaling = {("rope_type" if k == "type" else k): v for k, v in value.items()}
            rope.update(scaling)
        elif not hasattr(hf_config, key):
            raise ConfigError(f"{where}.{key}: {type(hf_config).__name__} has no such setting")
        else:
            setattr(hf_config, key, value)
    return hf_config


def load_config(model: str, overrides: dict[str, Any] | None, where: str = "sft.model_config") -> Any:
    """The student's transformers config with `overrides` applied (None when there are none: TRL loads as usual)."""
    if not overrides:
        return None
    from transformers import AutoConfig

    return apply_overrides(AutoConfig.from_pretrained(model), overrides, where)
