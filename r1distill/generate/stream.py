"""The generation loop: requests made as the engine asks for them, each completion written the moment it finishes
(one flushed line, with its logprob bytes first), and the resume state that makes a rerun ask only for what is
missing."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from r1distill.core.progress import Progress
from r1distill.core.records import Sample, key_hash
from r1distill.core.store import ShardWriter, StageError, atomic_write_text, iter_records, recover
from r1distill.generate.engines import Request
from r1distill.generate.logprobs import encode
from r1distill.generate.plan import hashes, messages_for, request_seed
from r1distill.generate.prompts import Prompt

log = logging.getLogger("r1distill.generate.stage")
STATE = "_generate_state.json"


def resume_state(output_dir: Path, chash: str) -> np.ndarray:
    """Sorted id hashes of the samples on disk, after sealing what a killed run left; refuses a folder of a
    different teacher config."""
    state_path = output_dir / STATE
    if state_path.exists():
        previous = json.loads(state_path.read_text())["content_hash"]
        if previous != chash:
            raise StageError(
                f"{output_dir} holds samples from a different teacher/sampling config ({previous} != {chash}); "
                "use another --output or delete that folder"
            )
    else:
        atomic_write_text(state_path, json.dumps({"content_hash": chash}) + "\n")
    recover(output_dir)
    return np.sort(hashes(key_hash(rec["id"]) for rec in iter_records(output_dir)))


def stream(cfg: Any, engine, model, sampling, pairs, todo, output_dir, already) -> tuple[list[dict[str, str]], dict]:
    """Stream the `todo` samples of `pairs` to disk; returns the failed requests and this run's figures.

    Requests are made as the engine asks for them (it holds at most max_in_flight), and each is forgotten once its
    completion is written, so nothing here grows with the run."""
    if not todo:
        return [], {"samples": 0}
    pending: dict[str, tuple[Prompt, int, Request]] = {}

    def requests() -> Iterator[Request]:
        for p, k, sid in pairs:
            req = Request(sid, messages_for(cfg, p), sampling, cfg.prefill, request_seed(cfg.seed, sid), cfg.logprobs)
            pending[sid] = (p, k, req)
            yield req

    own = engine is None
    if own:
        from r1distill.generate.stage import start_engine

        engine = start_engine(cfg, model)
    teacher = {**engine.describe(), "model": cfg.model}
    errors: list[dict[str, str]] = []
    progress = Progress(total=already + todo, desc="generate", initial=already)
    t0 = time.monotonic()
    try:
        with ShardWriter(output_dir, cfg.rows_per_shard) as writer:
            for c in engine.generate(requests()):
                prompt, k, req = pending.pop(c.id)
                if c.error:
                    errors.append({"id": c.id, "error": c.error})
                    continue
                sample = Sample(
                    id=c.id,
                    source=prompt.source,
                    row=prompt.row,
                    k=k,
                    domain=prompt.domain,
                    problem=prompt.problem,
                    messages=req.messages,
                    reference=prompt.reference,
                    completion=c.text if c.full else cfg.prefill + c.text,
                    meta={
                        **c.extra,
                        "teacher": teacher,
                        "sampling": {**sampling, "seed": req.seed if engine.supports_seed else None},
                        "prefill": cfg.prefill,
                        "finish_reason": c.finish_reason,
                        "prompt_tokens": c.prompt_tokens,
                        "completion_tokens": c.completion_tokens,
                    },
                )
                if cfg.logprobs:
                    if c.logprobs is None:
                        errors.append({"id": c.id, "error": "the engine returned no logprobs"})
                        continue
                    blob = encode(*c.logprobs, k=cfg.logprobs)
                    file, offset = writer.write_blob(blob)  # bytes first: a written sample always has them
                    sample.meta["logprobs"] = {
                        "file": file,
                        "offset": offset,
                        "tokens": len(c.logprobs[0]),
                        "k": cfg.logprobs,
                    }
                writer.write(sample.to_json())
                progress.update(1, c.completion_tokens)
    finally:
        progress.close()
        if own:
            engine.close()
    wall = time.monotonic() - t0
    log.info(
        "generate: wrote %d samples (%d output tokens) in %.1f s: %.1f output tok/s, %d failed -> %s",
        progress.items,
        progress.tokens,
        wall,
        progress.tokens / max(wall, 1e-9),
        len(errors),
        output_dir,
    )
    return errors, {
        "samples": progress.items,
        "output_tokens": progress.tokens,
        "wall_s": round(wall, 2),
        "output_tok_per_s": round(progress.tokens / max(wall, 1e-9), 1),
        "failed": len(errors),
    }
