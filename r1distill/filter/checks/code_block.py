"""`code_block`: code pasted into the reasoning of domains where it does not belong (math, science).

Scope it per domain in the policy (`domains: [math, science]`). Fenced blocks count, and so do unfenced runs of
lines that clearly are code: a statement keyword or brace/semicolon line structure, several lines in a row.
"""

from __future__ import annotations

import re

from r1distill.core.records import Sample, Verdict
from r1distill.core.text import FENCE
from r1distill.filter.checks import evidence, register

_CODE_LINE = re.compile(
    r"""^[ \t]*(?:
        (?:def|class|import|return|elif|while|public|private|static|void|function|fn|using|package|const|var)\b
      | from\s+\S+\s+import\b | for\s+\w+\s+in\b.*:\s*$ | if\s.*:\s*$ | print\( | \#include
      | .*[;{}]\s*$
    )""",
    re.X,
)
_LATEX = re.compile(r"\\[A-Za-z]+|\$")  # a line with LaTeX is mathematics, even when it ends with a brace


def code_runs(text: str) -> list[int]:
    """Lengths (in lines) of consecutive code-looking line runs outside fences, longest first."""
    return sorted((n for n, _, _ in _runs(text)), reverse=True)


def _runs(text: str) -> list[tuple[int, int, int]]:
    """(lines, start offset, end offset) of each run of code-looking lines; blank lines inside a run continue it."""
    runs, current, start, pos, end = [], 0, 0, 0, 0
    for line in text.split("\n"):
        if line.strip() and _CODE_LINE.match(line) and not _LATEX.search(line):
            if current == 0:
                start = pos
            current += 1
            end = pos + len(line)
        elif line.strip() or current == 0:
            if current:
                runs.append((current, start, end))
            current = 0
        pos += len(line) + 1
    if current:
        runs.append((current, start, end))
    return runs


def code_block(sample: Sample, *, allow_fenced: bool = False, max_code_lines: int = 4) -> Verdict:
    """Drop (`code_block`) a reasoning with a fenced block (unless `allow_fenced`) or more than `max_code_lines`
    unfenced code lines in a row. Equations such as `x = 3` alone do not make a run: a run needs several lines."""
    reasoning = sample.reasoning
    fences = list(FENCE.finditer(reasoning)) if "```" in reasoning or "~~~" in reasoning else []
    if fences and not allow_fenced:
        lines = sum(m.group("body").count("\n") for m in fences)
        verdict = Verdict.drop("code_block", kind="fenced", blocks=len(fences), lines=lines)
        first = fences[0]
        verdict.evidence = evidence("reasoning", reasoning, first.start(), first.end(), "no fenced code block")
        return verdict
    if not any(c in reasoning for c in "(;{=:"):
        return Verdict.ok()
    # Fences blanked to their line breaks: run offsets stay offsets into the reasoning.
    text = FENCE.sub(lambda m: "\n" * m.group().count("\n"), reasoning) if fences else reasoning
    runs = _runs(text)
    longest = max(runs, default=None)
    if longest and longest[0] > max_code_lines:
        verdict = Verdict.drop("code_block", kind="unfenced", lines=longest[0])
        rule = {"max_code_lines": max_code_lines}
        verdict.evidence = evidence("reasoning", reasoning, longest[1], longest[2], rule, lines=longest[0])
        return verdict
    return Verdict.ok()


register("code_block", code_block)
