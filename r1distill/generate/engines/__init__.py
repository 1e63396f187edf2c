"""Teacher backends behind one interface (see `base.Engine`)."""

from __future__ import annotations

from typing import Any

from r1distill.generate.engines.base import Completion, Engine, Request

__all__ = ["Completion", "Engine", "Request", "make_engine"]

ENGINES = ("vllm", "openai", "ray")


def make_engine(
    kind: str,
    model: str,
    vllm_kwargs: dict,
    http: Any = None,
    max_in_flight: int | None = None,
    tokenizer: str | None = None,
    ray: dict | None = None,
) -> Engine:
    """The engine named by the recipe's `generate.engine`: `vllm` (in-process), `openai` (HTTP endpoints) or
    `ray` (Ray Data's vLLM processor over a Ray cluster)."""
    if kind == "ray":
        from r1distill.generate.engines.ray_data import RayDataEngine

        return RayDataEngine(model, vllm_kwargs, ray)
    if kind == "vllm":
        from r1distill.generate.engines.vllm_local import VLLMEngine

        return VLLMEngine(model, vllm_kwargs, max_in_flight)
    if kind == "openai":
        from r1distill.generate.engines.openai_http import OpenAIEngine

        tok = None
        if tokenizer:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(tokenizer)
        return OpenAIEngine(model, http, tok)
    raise ValueError(f"unknown engine {kind!r}; available: {', '.join(ENGINES)}")
