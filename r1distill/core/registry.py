"""The stages of the pipeline, in order: one registry read by the CLI, `run`, `submit`, the report and the dry-run."""

from __future__ import annotations

import importlib
from types import ModuleType

# Every stage in pipeline order: its name (CLI command, recipe section, run-dir folder) -> the module that does it.
# `r1distill run`, `submit`, the report and the dry-run look stages up here and nowhere else.
STAGES = {
    "generate": "r1distill.generate.stage",
    "verify": "r1distill.verify.stage",
    "filter": "r1distill.filter.stage",
    "build": "r1distill.build.stage",
    "publish": "r1distill.build.publish",
    "sft": "r1distill.train.sft",
    "distill": "r1distill.train.distill",
    "rl": "r1distill.train.rl",
    "quantize": "r1distill.quantize.stage",  # after training, before evaluate (which may take it as a baseline)
    "evaluate": "r1distill.evaluate.stage",
}

# Training stages: several processes per job under `accelerate launch` (what `r1distill submit` renders for them).
LAUNCHED = ("sft", "distill", "rl")


def stage_module(stage: str) -> ModuleType:
    """The module of a registered stage (imported on first use: a stage's heavy imports stay out of the others)."""
    return importlib.import_module(STAGES[stage])
