"""The records that flow between stages: a teacher `Sample` and the `Verdict` of a check.

A sample is one JSON line. Its reasoning and final answer are never stored twice: they are derived from the raw
completion by `parse_completion`, the one parser every stage uses.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
_THINK_TAG = re.compile(r"</?think>")


def sample_id(source: str, row: int | str, k: int) -> str:
    """Stable id of the k-th sample of a prompt: the key for resume, dedup and logprob sidecars."""
    return f"{source}/{row}/{k}"


def key_hash(*parts: str) -> int:
    """A 64-bit digest of an id (or of a (source, row) pair), for id sets that must stay small at a million
    samples: 8 bytes in a numpy array, or one small int in a set, instead of the id string."""
    return int.from_bytes(hashlib.blake2b("\x00".join(parts).encode(), digest_size=8).digest(), "little")


def prompt_key(source: str, row: int | str) -> str:
    """Which prompt a sample answers, `{source}/{row}`: its id without the sample index. (Two prompts with the same
    text from different rows are different prompts here; build's `problem_hash` groups by text.)"""
    return f"{source}/{row}"


@dataclass(frozen=True)
class Parsed:
    """A completion split at its `<think>` block.

    `reasoning` is the text inside the first `<think>...</think>`, `answer` the text after the closing tag (stripped).
    With no closing tag, everything after `<think>` is reasoning and `answer` is empty (`closed` is False): the
    shape of a truncated trace. `n_open`/`n_close` count the tags so format checks can demand exactly one block.
    """

    reasoning: str
    answer: str
    has_think: bool
    closed: bool
    n_open: int
    n_close: int


@functools.lru_cache(maxsize=16)
def parse_completion(text: str) -> Parsed:
    """Split a raw completion into reasoning and final answer (see `Parsed`); cached, as every check of a filter
    policy asks for the same sample's split (`Parsed` is frozen, so sharing it is safe)."""
    n_open = text.count(THINK_OPEN)
    n_close = text.count(THINK_CLOSE)
    start = text.find(THINK_OPEN)
    if start < 0:
        # Some servers strip the opening tag (it was in the prefill): `reasoning</think>answer`.
        end = text.find(THINK_CLOSE)
        if end < 0:
            return Parsed("", text.strip(), False, False, n_open, n_close)
        return Parsed(text[:end].strip(), text[end + len(THINK_CLOSE) :].strip(), True, True, n_open, n_close)
    body = text[start + len(THINK_OPEN) :]
    end = body.find(THINK_CLOSE)
    if end < 0:
        return Parsed(body.strip(), "", True, False, n_open, n_close)
    return Parsed(body[:end].strip(), body[end + len(THINK_CLOSE) :].strip(), True, True, n_open, n_close)


def strip_think_tags(text: str) -> str:
    return _THINK_TAG.sub("", text)


@dataclass
class Verdict:
    """Outcome of a check or a verifier: keep or not, and why (a short snake_case reason, counted in manifests)."""

    keep: bool
    reason: str = "ok"
    details: dict[str, Any] = field(default_factory=dict)
    evidence: dict[str, Any] | None = None  # a drop's proof: excerpt, offset, threshold (filter checks set it)

    @classmethod
    def ok(cls, **details: Any) -> Verdict:
        return cls(True, "ok", details)

    @classmethod
    def drop(cls, reason: str, **details: Any) -> Verdict:
        return cls(False, reason, details)


@dataclass
class Sample:
    """One teacher completion for one prompt.

    `messages` are the prompt turns sent to the teacher (system optional, then user). `completion` is the full
    assistant text including any prefill (so `<think>` is in it even when the teacher only continued after it).
    `meta` carries the teacher, sampling parameters, finish reason, token counts and, later, verdicts.
    """

    id: str
    source: str
    row: str
    k: int
    domain: str
    problem: str
    messages: list[dict[str, str]]
    reference: Any
    completion: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def parsed(self) -> Parsed:
        return parse_completion(self.completion)

    @property
    def reasoning(self) -> str:
        return self.parsed.reasoning

    @property
    def answer(self) -> str:
        return self.parsed.answer

    @property
    def finish_reason(self) -> str | None:
        return self.meta.get("finish_reason")

    def to_json(self) -> str:
        # The fields as they are, without `asdict`'s deep copy of every nested value (a third of a filter drop's cost).
        return json.dumps({f: getattr(self, f) for f in _SAMPLE_FIELDS}, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Sample:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


_SAMPLE_FIELDS = tuple(Sample.__dataclass_fields__)
