"""`code_block`: code pasted into the reasoning of domains where it does not belong (math, science).

Scope it per domain in the policy (`domains: [math, science]`). Fenced blocks count, and so do unfenced runs of
lines that clearly are code: a statement keyword or brace/semicolon line structure, several lines in a row.
"""

from __future__ import annotations

import re

from r1distill.core.records import Sample, Verdict
from r1distill.filter.checks import register

_FENCE = re.compile(r"^[ \t]*(```|~~~)[^\n]*\n(.*?)^[ \t]*\1", re.M | re.S)
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
    runs, current = [], 0
    for line in text.splitlines():
        if line.strip() and _CODE_LINE.match(line) and not _LATEX.search(line):
            current += 1
        elif line.strip() or current == 0:
            if current:
                runs.append(current)
            current = 0
    if current:
        runs.append(current)
    return sorted(runs, reverse=True)


def code_block(sample: Sample, *, allow_fenced: bool = False, max_code_lines: int = 4) -> Verdict:
    """Drop (`code_block`) a reasoning with a fenced block (unless `allow_fenced`) or more than `max_code_lines`
    unfenced code lines in a row. Equations such as `x = 3` alone do not make a run: a run needs several lines."""
    reasoning = sample.reasoning
    fences = _FENCE.findall(reasoning)
    if fences and not allow_fenced:
        lines = sum(body.count("\n") for _, body in fences)
        return Verdict.drop("code_block", kind="fenced", blocks=len(fences), lines=lines)
    if not any(c in reasoning for c in "(;{=:"):
        return Verdict.ok()
    runs = code_runs(_FENCE.sub("", reasoning))
    if runs and runs[0] > max_code_lines:
        return Verdict.drop("code_block", kind="unfenced", lines=runs[0])
    return Verdict.ok()


register("code_block", code_block)
