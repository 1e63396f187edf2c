"""Teacher top-k logprobs: a compact binary sidecar per shard, keyed by sample id, read lazily.

For a completion of T tokens with top-k capture, one record in the sidecar is four little-endian arrays::

    token_ids  int32   [T]      the sampled tokens
    token_lp   float32 [T]      their logprobs
    top_ids    int32   [T, k]   the teacher's k most likely tokens at each step (-1 where fewer came back)
    top_lp     float16 [T, k]   their logprobs (-inf where fewer came back)

so a token costs 8 + 6k bytes: 38 B at k=5, 128 B at k=20 (a 32k-token trace at k=20 is 4 MB). The JSONL sample
holds only `meta.logprobs = {file, offset, tokens, k}`; the bytes are written and flushed before the sample's line,
so a sample on disk always has its logprobs. Sidecar names are unique, so shard merges link them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from r1distill.core.store import StageError, iter_records


@dataclass
class TokenLogprobs:
    token_ids: np.ndarray
    token_lp: np.ndarray
    top_ids: np.ndarray
    top_lp: np.ndarray

    @property
    def k(self) -> int:
        return self.top_ids.shape[1]


def bytes_per_token(k: int) -> int:
    return 8 + 6 * k


def encode(token_ids: list[int], token_lp: list[float], top: list[list[tuple[int, float]]], k: int) -> bytes:
    """Pack one completion; `top[t]` lists (token id, logprob) pairs, best first (extra ones are dropped)."""
    t = len(token_ids)
    top_ids = np.full((t, k), -1, dtype="<i4")
    top_lp = np.full((t, k), -np.inf, dtype="<f2")
    for i, row in enumerate(top):
        row = row[:k]
        if row:
            top_ids[i, : len(row)] = [tid for tid, _ in row]
            top_lp[i, : len(row)] = [lp for _, lp in row]
    return (
        np.asarray(token_ids, dtype="<i4").tobytes()
        + np.asarray(token_lp, dtype="<f4").tobytes()
        + top_ids.tobytes()
        + top_lp.tobytes()
    )


def decode(buf: bytes, tokens: int, k: int) -> TokenLogprobs:
    a = np.frombuffer(buf, dtype="<i4", count=tokens)
    pos = 4 * tokens
    b = np.frombuffer(buf, dtype="<f4", count=tokens, offset=pos)
    pos += 4 * tokens
    c = np.frombuffer(buf, dtype="<i4", count=tokens * k, offset=pos).reshape(tokens, k)
    pos += 4 * tokens * k
    d = np.frombuffer(buf, dtype="<f2", count=tokens * k, offset=pos).reshape(tokens, k)
    return TokenLogprobs(a, b, c, d)


def read(stage_dir: str | Path, ref: dict[str, Any]) -> TokenLogprobs:
    """The logprobs a sample's `meta.logprobs` points at, read from its sidecar without loading the rest."""
    path = Path(stage_dir) / ref["file"]
    size = ref["tokens"] * bytes_per_token(ref["k"])
    try:
        with open(path, "rb") as f:
            f.seek(ref["offset"])
            buf = f.read(size)
    except FileNotFoundError:
        raise StageError(f"{path}: logprob sidecar missing; copy it along with the shards") from None
    if len(buf) != size:
        raise StageError(f"{path}: truncated at offset {ref['offset']} (wanted {size} bytes, got {len(buf)})")
    return decode(buf, ref["tokens"], ref["k"])


class LogprobStore:
    """Sample id -> logprobs for a generate folder (the index is built from the shards' `meta.logprobs`)."""

    def __init__(self, stage_dir: str | Path):
        self.dir = Path(stage_dir)
        self.index = {r["id"]: r["meta"]["logprobs"] for r in iter_records(self.dir) if r["meta"].get("logprobs")}

    def __contains__(self, sample_id: str) -> bool:
        return sample_id in self.index

    def __getitem__(self, sample_id: str) -> TokenLogprobs:
        return read(self.dir, self.index[sample_id])
