"""Prompts for the training stages that sample from the student (rl, and on-policy distillation): the recipe's
`sources` (generate's source spec) rendered with the student's chat template plus the `<think>` prefill, exactly as
generate renders them, into the `datasets.Dataset` TRL trains on (reference, domain and id ride as columns)."""

from __future__ import annotations

import json
from typing import Any

from r1distill.core.records import prompt_key
from r1distill.core.store import StageError
from r1distill.generate import stage as generate
from r1distill.generate.engines.base import Request, render_text
from r1distill.generate.plan import messages_for
from r1distill.generate.prompts import Prompt
from r1distill.generate.prompts import load_prompts as load_prompts_from


def load_prompts(cfg: Any, where: str = "rl") -> list[Prompt]:
    """Every prompt of `{where}.sources`, validated (errors name the source); each needs a reference to be graded."""
    prompts = load_prompts_from(cfg.sources, cfg.limit, f"{where}.sources")
    for i, src in enumerate(cfg.sources):
        if not src.answer_field:
            raise StageError(
                f"{where}.sources[{i}].answer_field: training needs a reference answer (or tests) for every prompt"
            )
    return prompts


def generate_config(cfg: Any, model: str) -> generate.GenerateConfig:
    """How prompts are rendered (and, for selection, sampled): the same settings generate uses."""
    return generate.GenerateConfig(
        sources=cfg.sources,
        model=model,
        limit=cfg.limit,
        system_prompt=cfg.system_prompt,
        prompt_template=cfg.prompt_template,
        prefill=cfg.prefill,
    )


def _reference(value: Any) -> Any:
    """Strings as they are; anything else (code tests, numbers) as JSON text, which the graders read back."""
    return value if isinstance(value, str) else json.dumps(value)


def build_dataset(prompts: list[Prompt], gen: generate.GenerateConfig, tokenizer: Any, where: str = "rl"):
    """A `datasets.Dataset` of text prompts (template + prefill, as generate renders them) with reference, domain
    and id columns, which TRL hands to the reward functions."""
    import datasets

    probe = tokenizer("x").input_ids
    bos = tokenizer.bos_token if tokenizer.bos_token_id is not None and probe[:1] == [tokenizer.bos_token_id] else None
    if not getattr(tokenizer, "chat_template", None):
        raise StageError(f"{where}.model {gen.model!r}: its tokenizer has no chat template; start from a chat model")
    rows = []
    for p in prompts:
        text = render_text(tokenizer, Request("", messages_for(gen, p), prefill=gen.prefill))
        if bos and text.startswith(bos):  # TRL tokenises text prompts with special tokens: no second BOS
            text = text[len(bos) :]
        key = prompt_key(p.source, p.row)
        rows.append({"prompt": text, "reference": _reference(p.reference), "domain": p.domain, "id": key})
    return datasets.Dataset.from_list(rows)
