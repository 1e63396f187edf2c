"""`long_paragraph`: one of the three defects R1's authors filtered out of their distillation data."""

from __future__ import annotations

import re

from r1distill.core.records import Sample, Verdict
from r1distill.filter.checks import register

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[^\n]*$", re.M | re.S)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")


def paragraph_lengths(text: str, cjk_weight: float = 3.0) -> list[int]:
    """Length of each blank-line-separated paragraph in Latin-equivalent characters (a CJK character counts
    `cjk_weight`: it carries about as much text as three Latin letters, so one limit serves both)."""
    out = []
    for para in _PARAGRAPH_BREAK.split(text):
        n = len(para)
        if cjk_weight != 1.0 and not para.isascii():
            n += int((cjk_weight - 1.0) * len(_CJK.findall(para)))
        out.append(n)
    return out


def long_paragraph(
    sample: Sample,
    *,
    max_chars: int = 3000,
    cjk_weight: float = 3.0,
    check_answer: bool = False,
    ignore_code: bool = True,
) -> Verdict:
    """Drop (`long_paragraph`) when a reasoning paragraph (or, with `check_answer`, an answer paragraph) exceeds
    `max_chars`. Fenced code blocks are not prose paragraphs and are skipped unless `ignore_code` is false."""
    p = sample.parsed
    parts = [("reasoning", p.reasoning)] + ([("answer", p.answer)] if check_answer else [])
    for part, text in parts:
        if len(text) * max(cjk_weight, 1.0) <= max_chars or (len(text) <= max_chars and text.isascii()):
            continue  # no paragraph of this text can be over the limit
        if ignore_code and ("```" in text or "~~~" in text):
            text = _FENCE.sub("", text)
        longest = max(paragraph_lengths(text, cjk_weight), default=0)
        if longest > max_chars:
            return Verdict.drop("long_paragraph", part=part, chars=longest, max_chars=max_chars)
    return Verdict.ok()


register("long_paragraph", long_paragraph)
