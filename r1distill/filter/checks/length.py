"""`length`: the completion must fit the student's context, counted with the student's own tokenizer."""

from __future__ import annotations

import functools
import logging
from typing import Any

from r1distill.core.records import Sample, Verdict
from r1distill.filter.checks import Check, evidence, register_factory

log = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4.0


@functools.lru_cache(maxsize=4)
def load_tokenizer(path: str) -> Any:
    """The student's tokenizer, once per process (each worker loads its own)."""
    from r1distill.core.models import load_tokenizer as load

    return load(path, "filter.tokenizer")


def count_tokens(text: str, tokenizer: Any | None) -> tuple[int, str]:
    """(token count, method): the tokenizer's count, or `chars/4` when no tokenizer is configured."""
    if tokenizer is None:
        return int(len(text) / CHARS_PER_TOKEN + 0.5), "chars/4 estimate (no tokenizer configured)"
    return len(tokenizer(text, add_special_tokens=False)["input_ids"]), "tokenizer"


def make_length(
    *, max_tokens: int = 32768, min_tokens: int = 0, tokenizer: str | None = None, field: str = "completion"
) -> Check:
    """Drop `too_long` above `max_tokens` (and `too_short` below `min_tokens`) of the completion (or `reasoning`,
    `answer`). With `tokenizer` (a path or Hub id) the student's tokenizer counts; without it, a chars/4
    estimate, which the drop details say."""
    if field not in ("completion", "reasoning", "answer"):
        raise TypeError(f"field must be completion, reasoning or answer, got {field!r}")
    tok = load_tokenizer(tokenizer) if tokenizer else None
    if tok is None:
        log.info("length check: no tokenizer configured; using a chars/%.0f estimate", CHARS_PER_TOKEN)

    def length(sample: Sample) -> Verdict:
        text = getattr(sample, field)
        # Every token covers at least one character, so short texts cannot exceed the limit: skip tokenizing.
        if tok is not None and len(text) <= max_tokens and min_tokens == 0:
            return Verdict.ok()
        n, method = count_tokens(text, tok)
        if n > max_tokens:
            verdict = Verdict.drop("too_long", tokens=n, max_tokens=max_tokens, method=method)
        elif n < min_tokens:
            verdict = Verdict.drop("too_short", tokens=n, min_tokens=min_tokens, method=method)
        else:
            return Verdict.ok()
        # Where the text ends (too long: how far past the budget it ran; too short: all of it).
        rule = {"max_tokens": max_tokens, "min_tokens": min_tokens, "method": method}
        verdict.evidence = evidence(field, text, len(text) - 300, None, rule, tokens=n)
        return verdict

    return length


register_factory("length", make_length)
