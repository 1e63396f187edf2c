"""Where the teacher's distributions come from during training: the generate sidecars (offline) or a model (online).

Offline, the rows are tokenized once here, by TRL's own preparation code, so TRL skips its tokenization and the
student ids it trains on are exactly the ones aligned to the teacher. TRL then truncates or packs them and keeps only
`input_ids`/`labels`, so the teacher data cannot ride along as a column. Instead every sequence TRL can hand the
model (the whole row, its first or last `max_length` tokens, its `max_length` chunks under `bfd_split`) is indexed
by a hash of its token ids, and each batch is split back into its sequences (position ids restart at 0 in a
padding-free batch; one row each otherwise) and looked up. The sidecar bytes are read per step, never held.
"""

from __future__ import annotations

import hashlib
import json
import logging
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch

from r1distill.core.store import StageError
from r1distill.generate import logprobs
from r1distill.train.kd import align

log = logging.getLogger(__name__)


def seq_key(ids) -> bytes:
    return hashlib.blake2b(np.asarray(ids, dtype=np.int32).tobytes(), digest_size=16).digest()


def tokenize_like_trl(dataset, tokenizer, args, name: str):
    """The rows as TRL tokenizes them (`input_ids`, `labels` with -100 outside the trained tokens), other columns
    kept. Runs TRL's own `_prepare_dataset` without truncation, packing or shuffling, which TRL applies later."""
    from trl import SFTTrainer
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    first = dataset[0]
    shim = types.SimpleNamespace(
        _tokenizer=tokenizer,
        chat_template=get_training_chat_template(tokenizer)
        if args.assistant_only_loss and not has_generation_markers(tokenizer.chat_template)
        else None,
        completion_only_loss=args.completion_only_loss
        if args.completion_only_loss is not None
        else ("prompt" in first and "completion" in first),
    )
    prep_args = types.SimpleNamespace(
        dataset_num_proc=args.dataset_num_proc,
        dataset_text_field=args.dataset_text_field,
        assistant_only_loss=args.assistant_only_loss,
        max_length=None,
        shuffle_dataset=False,
    )
    return SFTTrainer._prepare_dataset(shim, dataset, tokenizer, prep_args, False, None, name)


def segments(inputs: dict[str, torch.Tensor]) -> list[tuple[int, int, int]]:
    """(row, start, end) of every sequence in a collated batch."""
    ids = inputs["input_ids"]
    if "attention_mask" not in inputs and "position_ids" in inputs:
        pos = inputs["position_ids"].cpu()
        out = []
        for b in range(ids.shape[0]):
            starts = torch.nonzero(pos[b] == 0).flatten().tolist() + [ids.shape[1]]
            out += [(b, s, e) for s, e in zip(starts[:-1], starts[1:], strict=True)]
        return out
    mask = inputs.get("attention_mask")
    lengths = mask.sum(1).tolist() if mask is not None else [ids.shape[1]] * ids.shape[0]
    return [(b, 0, int(n)) for b, n in enumerate(lengths)]


class OfflineTeacher:
    """Sequence hash -> (row, offset) -> the row's sidecar positions, read at each step."""

    def __init__(self, logprobs_dir: Path, tokenizer, top_k: int | None, max_length: int | None):
        self.dir = Path(logprobs_dir)
        self.top_k = top_k
        self.max_length = max_length
        self.table = align.piece_table(tokenizer)
        self.skip = align.special_ids(tokenizer)
        self.rows: list[tuple[np.ndarray, int, dict[str, Any] | None]] = []  # (runs, tokens, sidecar ref)
        self.keys: dict[bytes, tuple[int, int]] = {}
        self.k = 0
        self.aligned = self.targets = self.no_logprobs = 0
        self._store = None
        self.unmatched = 0

    def _ref(self, row: dict[str, Any]) -> dict[str, Any] | None:
        meta = row.get("meta")
        meta = json.loads(meta) if isinstance(meta, str) else meta or {}
        if meta.get("logprobs"):
            return meta["logprobs"]
        if self._store is None:
            self._store = logprobs.LogprobStore(self.dir)
        return self._store.index.get(row.get("id"))

    def add(self, dataset) -> None:
        """Align and index every row of a `tokenize_like_trl` dataset."""
        for row in dataset:
            ref = self._ref(row)
            if ref is None:
                self.no_logprobs += 1
                src, n = np.full(len(row["input_ids"]), -1, np.int32), 0
            else:
                lp = logprobs.read(self.dir, ref)
                content = row["messages"][-1]["content"]
                src, n = align.align(row["input_ids"], content, lp.token_ids, self.table, self.skip)
                labelled = np.asarray(row["labels"]) != -100
                src[~labelled] = -1
                self.k = max(self.k, ref["k"])
            self.aligned += int((src >= 0).sum())
            self.targets += n
            self._index(row["input_ids"], len(self.rows))
            self.rows.append((align.to_runs(src), len(src), ref))

    def _index(self, ids: list[int], r: int) -> None:
        self.keys.setdefault(seq_key(ids), (r, 0))
        n, m = len(ids), self.max_length
        if m and n > m:
            self.keys.setdefault(seq_key(ids[:m]), (r, 0))
            self.keys.setdefault(seq_key(ids[-m:]), (r, n - m))
            for s in range(m, n, m):
                self.keys.setdefault(seq_key(ids[s : s + m]), (r, s))

    @property
    def aligned_fraction(self) -> float:
        return self.aligned / self.targets if self.targets else 0.0

    def batch(self, inputs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher (top ids, top logprobs) for every token of the batch, [B, L, k]: at [b, j] the distribution
        that predicts token j (-1 / -inf where there is none)."""
        ids = inputs["input_ids"].cpu().numpy()
        labels = inputs["labels"].cpu().numpy()
        k = min(self.k, self.top_k or self.k)
        top_ids = np.full((*ids.shape, k), -1, dtype=np.int64)
        top_lp = np.full((*ids.shape, k), -np.inf, dtype=np.float32)
        for b, s, e in segments(inputs):
            hit = self.keys.get(seq_key(ids[b, s:e]))
            if hit is None:
                if (labels[b, s + 1 : e] != -100).any():  # padding is not a sequence
                    self.unmatched += 1
                    if self.unmatched == 1:
                        log.warning("kd: a trained sequence of %d tokens has no teacher data (not in the index)", e - s)
                continue
            r, off = hit
            runs, length, ref = self.rows[r]
            src = align.from_runs(runs, length)[off : off + e - s]
            have = np.nonzero(src >= 0)[0]
            if not len(have):
                continue
            lp = logprobs.read(self.dir, ref)
            kk = min(k, lp.k)
            top_ids[b, s + have, :kk] = lp.top_ids[src[have], :kk]
            top_lp[b, s + have, :kk] = lp.top_lp[src[have], :kk]
        return torch.from_numpy(top_ids), torch.from_numpy(top_lp)


class OnlineTeacher:
    """A teacher model beside the student: eval mode, no gradients, moved to the student's device on first use."""

    def __init__(self, model, top_k: int | None):
        self.model = model.eval().requires_grad_(False)
        self.top_k = top_k

    @torch.no_grad()
    def logits(self, inputs: dict[str, torch.Tensor], keep: torch.Tensor) -> torch.Tensor:
        return self.forward(inputs, keep).logits

    @torch.no_grad()
    def forward(self, inputs: dict[str, torch.Tensor], keep: torch.Tensor | int, hidden: bool = False):
        """The teacher's outputs: logits at the `keep` positions, and with `hidden` every layer's states."""
        device = inputs["input_ids"].device
        if next(self.model.parameters()).device != device:
            self.model.to(device)
        return self.model(**{**inputs, "use_cache": False}, logits_to_keep=keep, output_hidden_states=hidden)


def load_model(name: str, where: str):
    from transformers import AutoModelForCausalLM

    from r1distill.core.models import resolve_model
    from r1distill.train.common import on_cpu

    try:
        path = resolve_model(name)
        dtype = torch.float32 if on_cpu() else "auto"
        return AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except (StageError, OSError, ValueError) as e:
        raise StageError(f"{where}.teacher: cannot load {name!r}: {e}") from None
