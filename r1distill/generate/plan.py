"""What a generate run covers, kept small whatever its size: prompts streamed from their sources, requests built as
the engine asks for them, and the samples on disk counted in compact id sets.

Only 64-bit hashes of ids stay in memory (8 bytes a prompt in the plan, 16 bytes a sample while the finished folder
is checked), so peak memory is flat from ten thousand to a million samples (tests/perf/bench_scale.py measures it).
"""

from __future__ import annotations

import hashlib
import json
from array import array
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from r1distill.core.records import key_hash, sample_id
from r1distill.core.store import StageError, iter_records
from r1distill.generate.engines import Engine, Request
from r1distill.generate.engines.base import render_ids
from r1distill.generate.prompts import Prompt, iter_prompts

if TYPE_CHECKING:
    from r1distill.generate.stage import GenerateConfig


def request_seed(base: int | None, sid: str) -> int | None:
    """A per-sample seed derived from the id: a resumed sample is drawn exactly as it would have been."""
    if base is None:
        return None
    return int.from_bytes(hashlib.sha256(f"{base}:{sid}".encode()).digest()[:4], "little") & 0x7FFFFFFF


def messages_for(cfg: GenerateConfig, prompt: Prompt) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": cfg.system_prompt}] if cfg.system_prompt else []
    msgs.append({"role": "user", "content": cfg.prompt_template.replace("{problem}", prompt.problem)})
    return msgs


def prompt_check(cfg: GenerateConfig, model: str, engine: Engine | None = None) -> Callable[[Prompt], None] | None:
    """A check, run on every prompt before the engine starts, that it leaves room in the teacher's context (vLLM
    refuses a prompt of max_model_len tokens or more, but only once it is running). None where the context or the
    tokenizer is not at hand (an HTTP endpoint, a Hub id): the engine then reports such a prompt as failed."""
    tok = getattr(engine, "tokenizer", None)
    limit = cfg.vllm.get("max_model_len")
    where = "generate.vllm.max_model_len"
    if engine is not None and limit is None and hasattr(engine, "engine"):
        limit = engine.engine.vllm_config.model_config.max_model_len
    path = Path(model)
    if cfg.engine == "openai" or (tok is None and not (path / "tokenizer_config.json").is_file()):
        return None
    if limit is None and (path / "config.json").is_file():
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        limit = config.get("text_config", config).get("max_position_embeddings")
        where = f"the teacher's max_position_embeddings; raise it with {where}"
    if not isinstance(limit, int):
        return None
    if tok is None:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(path)
    empty = Prompt("", "", "", None, "")
    overhead = len(render_ids(tok, Request("", messages_for(cfg, empty), prefill=cfg.prefill))) + 8
    fields = {src.name: src.problem_field for src in cfg.sources}

    def check(p: Prompt) -> None:
        if overhead + len(p.problem.encode()) < limit:  # a token covers at least one byte: it fits, no need to count
            return
        tokens = len(render_ids(tok, Request(p.loc, messages_for(cfg, p), prefill=cfg.prefill)))
        if tokens >= limit:
            raise StageError(
                f"{p.loc}: field {fields.get(p.source, 'problem')!r} is {len(p.problem):,} characters, {tokens:,} "
                f"tokens with the chat template: no room in the teacher's context of {limit:,} tokens ({where}); "
                "shorten or drop that row"
            )

    return check


def hashes(values: Iterator[int]) -> np.ndarray:
    return np.frombuffer(array("Q", values), dtype=np.uint64)


def _has(ordered: np.ndarray, value: int) -> bool:
    i = int(np.searchsorted(ordered, value))
    return i < len(ordered) and int(ordered[i]) == value


@dataclass
class Plan:
    """The prompts this run covers, streamed again from the sources whenever needed: only their key hashes (8 bytes
    a prompt) stay in memory, so a run of a million samples holds what one of ten thousand holds."""

    cfg: GenerateConfig
    keep: Callable[[Prompt], bool] | None
    keys: np.ndarray  # sorted key_hash(source, row) of every prompt

    @property
    def wanted(self) -> int:
        return len(self.keys) * self.cfg.n

    def wants(self, rec: dict[str, Any]) -> bool:
        """Whether a sample on disk is one this plan asks for."""
        return rec["k"] < self.cfg.n and _has(self.keys, key_hash(rec["source"], rec["row"]))

    def pairs(self, skip: np.ndarray | None = None) -> Iterator[tuple[Prompt, int, str]]:
        """Every wanted (prompt, k, sample id) in order, leaving out ids whose hash is in `skip`."""
        for p in iter_prompts(self.cfg.sources, self.cfg.limit):
            if self.keep is None or self.keep(p):
                for k in range(self.cfg.n):
                    sid = sample_id(p.source, p.row, k)
                    if skip is None or not _has(skip, key_hash(sid)):
                        yield p, k, sid


def disk_summary(output_dir: Path, plan: Plan) -> dict[str, Any]:
    """Figures of the samples on disk, checking each wanted one is there exactly once (in 16 bytes a sample: its id
    hash, and a sorted copy)."""
    finish: Counter[str] = Counter()
    prompt_tokens = completion_tokens = samples = present = 0
    ids = array("Q")
    for rec in iter_records(output_dir):
        ids.append(key_hash(rec["id"]))
        present += plan.wants(rec)
        samples += 1
        finish[str(rec["meta"].get("finish_reason"))] += 1
        prompt_tokens += rec["meta"].get("prompt_tokens", 0)
        completion_tokens += rec["meta"].get("completion_tokens", 0)
    by_id = np.sort(hashes(iter(ids)))
    twice = np.flatnonzero(by_id[1:] == by_id[:-1])
    if twice.size:
        sid = next(r["id"] for r in iter_records(output_dir) if key_hash(r["id"]) == int(by_id[twice[0]]))
        raise StageError(f"{output_dir}: sample {sid} written twice; the folder is corrupt, regenerate it")
    if present < plan.wanted:
        example = next(sid for _, _, sid in plan.pairs(by_id))
        raise StageError(f"{output_dir}: {plan.wanted - present} requested samples missing (e.g. {example}); rerun")
    return {
        "samples": samples,
        "extra_samples": samples - present,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "mean_completion_tokens": round(completion_tokens / max(samples, 1), 1),
        "finish_reasons": dict(finish),
    }


def wanted_on_disk(output_dir: Path, plan: Plan) -> int:
    """How many wanted samples are on disk already."""
    return sum(plan.wants(rec) for rec in iter_records(output_dir))
