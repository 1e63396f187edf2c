"""Shape checks: one well-formed `<think>` block with content on both sides, and no truncated generations."""

from __future__ import annotations

from r1distill.core.records import Sample, Verdict
from r1distill.filter.checks import register


def think_format(sample: Sample, *, min_reasoning_chars: int = 1, min_answer_chars: int = 1) -> Verdict:
    """Exactly one `<think>...</think>` (the opening tag may live in the prefill), non-empty reasoning and answer.

    Reasons: `no_think` (no block), `think_unclosed`, `think_multiple` (a second block or stray tag),
    `empty_reasoning`, `empty_answer`.
    """
    p = sample.parsed
    if not p.has_think:
        return Verdict.drop("no_think")
    if not p.closed:
        return Verdict.drop("think_unclosed")
    if p.n_open > 1 or p.n_close != 1:
        return Verdict.drop("think_multiple", n_open=p.n_open, n_close=p.n_close)
    if len(p.reasoning) < min_reasoning_chars:
        return Verdict.drop("empty_reasoning", chars=len(p.reasoning))
    if len(p.answer) < min_answer_chars:
        return Verdict.drop("empty_answer", chars=len(p.answer))
    return Verdict.ok()


def truncated(sample: Sample, *, finish_reasons: tuple[str, ...] | list[str] = ("length",)) -> Verdict:
    """Drop generations cut by the token limit (`meta["finish_reason"]`) or whose reasoning never closes."""
    if sample.finish_reason in finish_reasons:
        return Verdict.drop("truncated", finish_reason=sample.finish_reason)
    parsed = sample.parsed
    if parsed.has_think and not parsed.closed:
        return Verdict.drop("truncated", finish_reason=sample.finish_reason, unclosed=True)
    return Verdict.ok()


register("think_format", think_format)
register("truncated", truncated)
