"""The teacher interface: submit requests, receive each completion as soon as it finishes.

An engine never waits for a whole batch: `generate` is a generator that keeps at most `max_in_flight` requests in
the engine and yields each finished one at once, so a stage can write it to disk before the slowest member of any
batch is done, and memory stays flat however many prompts there are.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    """One completion to produce. `prefill` is appended after the chat template's assistant header; `sampling`
    holds the upstream sampling settings (for vLLM, `SamplingParams` keyword arguments)."""

    id: str
    messages: list[dict[str, str]]
    sampling: dict[str, Any] = field(default_factory=dict)
    prefill: str = ""
    seed: int | None = None
    logprobs: int | None = None  # capture the teacher's top-k logprobs of every completion token


@dataclass
class Completion:
    """A finished request. `text` continues the prefill, unless `full` (the text is the whole assistant message,
    e.g. rebuilt from a server's separate reasoning field). `error` is set (and text empty) when it failed."""

    id: str
    text: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    error: str | None = None
    full: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    # (sampled token ids, their logprobs, per token the top-k (id, logprob) pairs) when requested
    logprobs: tuple[list[int], list[float], list[list[tuple[int, float]]]] | None = None


def render_text(tokenizer: Any, request: Request) -> str:
    """The chat-templated prompt plus the prefill (not doubled if the template already adds it)."""
    text = tokenizer.apply_chat_template(request.messages, add_generation_prompt=True, tokenize=False)
    if request.prefill and not text.endswith(request.prefill):
        text += request.prefill
    return text


def render_ids(tokenizer: Any, request: Request) -> list[int]:
    """`render_text` tokenised without special tokens added, so no engine prepends a second BOS."""
    return tokenizer(render_text(tokenizer, request), add_special_tokens=False).input_ids


class Engine(ABC):
    name: str = "engine"
    supports_seed: bool = True  # False: request seeds are ignored (recorded as null in samples)

    @abstractmethod
    def generate(self, requests: Iterable[Request]) -> Iterator[Completion]:
        """Yield one `Completion` per request, in completion order (not submission order)."""

    def describe(self) -> dict[str, Any]:
        """What to record about the teacher in manifests and samples."""
        return {"engine": self.name}

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
