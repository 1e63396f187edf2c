"""`long_paragraph`: one of the three defects R1's authors filtered out of their distillation data."""

from __future__ import annotations

from r1distill.core.records import Sample, Verdict
from r1distill.core.text import CJK_CHAR, FENCE, PARAGRAPH_BREAK, may_have_cjk
from r1distill.filter.checks import evidence, register


def paragraph_lengths(text: str, cjk_weight: float = 3.0) -> list[int]:
    """Length of each blank-line-separated paragraph in Latin-equivalent characters (a CJK character counts
    `cjk_weight`: it carries about as much text as three Latin letters, so one limit serves both)."""
    return [n for _, _, n in _paragraphs(text, cjk_weight)]


def _paragraphs(text: str, cjk_weight: float) -> list[tuple[int, int, int]]:
    """(start, end, weighted length) of each paragraph of `text`."""
    out, pos = [], 0
    for m in [*PARAGRAPH_BREAK.finditer(text), None]:
        end = m.start() if m else len(text)
        para = text[pos:end]
        n = len(para)
        if cjk_weight != 1.0 and not para.isascii():
            n += int((cjk_weight - 1.0) * len(CJK_CHAR.findall(para)))
        out.append((pos, end, n))
        pos = m.end() if m else pos
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
            # Blanked, not removed: the evidence's offset stays an offset into the text itself.
            text = FENCE.sub(lambda m: "\n" * m.group().count("\n"), text)
        if not may_have_cjk(text) and max(map(len, PARAGRAPH_BREAK.split(text))) <= max_chars:
            continue  # the common case in C: offsets are needed only for a drop's evidence
        start, end, longest = max(_paragraphs(text, cjk_weight), key=lambda t: t[2], default=(0, 0, 0))
        if longest > max_chars:
            verdict = Verdict.drop("long_paragraph", part=part, chars=longest, max_chars=max_chars)
            verdict.evidence = evidence(part, text, start, end, {"max_chars": max_chars}, chars=longest)
            return verdict
    return Verdict.ok()


register("long_paragraph", long_paragraph)
