"""Shape checks: one well-formed `<think>` block with content on both sides, and no truncated generations."""

from __future__ import annotations

from r1distill.core.records import THINK_CLOSE, THINK_OPEN, Sample, Verdict
from r1distill.filter.checks import evidence, register


def _at(verdict: Verdict, text: str, start: int, threshold) -> Verdict:
    verdict.evidence = evidence("completion", text, max(0, start), None, threshold)
    return verdict


def think_format(sample: Sample, *, min_reasoning_chars: int = 1, min_answer_chars: int = 1) -> Verdict:
    """Exactly one `<think>...</think>` (the opening tag may live in the prefill), non-empty reasoning and answer.

    Reasons: `no_think` (no block), `think_unclosed`, `think_multiple` (a second block or stray tag),
    `empty_reasoning`, `empty_answer`.
    """
    p, text = sample.parsed, sample.completion
    rule = "one <think>...</think> block"
    if not p.has_think:
        return _at(Verdict.drop("no_think"), text, 0, rule)
    if not p.closed:
        return _at(Verdict.drop("think_unclosed"), text, len(text) - 300, rule)
    if p.n_open > 1 or p.n_close != 1:
        second = max(text.find(tag, text.find(tag) + 1) for tag in (THINK_OPEN, THINK_CLOSE))  # the extra tag
        return _at(Verdict.drop("think_multiple", n_open=p.n_open, n_close=p.n_close), text, second - 100, rule)
    close = text.find(THINK_CLOSE)
    if len(p.reasoning) < min_reasoning_chars:
        verdict = Verdict.drop("empty_reasoning", chars=len(p.reasoning))
        return _at(verdict, text, close - 150, {"min_reasoning_chars": min_reasoning_chars})
    if len(p.answer) < min_answer_chars:
        verdict = Verdict.drop("empty_answer", chars=len(p.answer))
        return _at(verdict, text, close, {"min_answer_chars": min_answer_chars})
    return Verdict.ok()


def truncated(sample: Sample, *, finish_reasons: tuple[str, ...] | list[str] = ("length",)) -> Verdict:
    """Drop generations cut by the token limit (`meta["finish_reason"]`) or whose reasoning never closes."""
    end = len(sample.completion) - 300  # the evidence is where the text stops
    if sample.finish_reason in finish_reasons:
        verdict = Verdict.drop("truncated", finish_reason=sample.finish_reason)
        return _at(verdict, sample.completion, end, {"finish_reasons": list(finish_reasons)})
    parsed = sample.parsed
    if parsed.has_think and not parsed.closed:
        verdict = Verdict.drop("truncated", finish_reason=sample.finish_reason, unclosed=True)
        return _at(verdict, sample.completion, end, "</think> closes the reasoning")
    return Verdict.ok()


register("think_format", think_format)
register("truncated", truncated)
