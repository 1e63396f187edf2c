"""Teacher backends behind one interface (see `base.Engine`)."""

from r1distill.engines.base import Completion, Engine, Request

__all__ = ["Completion", "Engine", "Request", "make_engine"]


def make_engine(kind: str, model: str, vllm_kwargs: dict, max_in_flight: int | None = None) -> Engine:
    """The engine named by the recipe's `generate.engine`."""
    if kind == "vllm":
        from r1distill.engines.vllm_local import VLLMEngine

        return VLLMEngine(model, vllm_kwargs, max_in_flight)
    raise ValueError(f"unknown engine {kind!r}; available: vllm")
