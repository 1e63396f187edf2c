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


# What every `_CODE_LINE` alternative needs: a line that starts with one of these words (after indentation) or ends
# with `;{}`. Testing that with string methods first keeps the regex off the prose lines (most of them).
_STARTS = ("def", "class", "import", "return", "elif", "while", "public", "private", "static", "void", "function",
           "fn", "using", "package", "const", "var", "from", "for", "if", "print(", "#include")  # fmt: skip
_ENDS = (";", "{", "}")


def _runs(text: str, min_lines: int = 0) -> list[tuple[int, int, int]]:
    """(lines, start offset, end offset) of each run of code-looking lines; blank lines inside a run continue it.
    With fewer than `min_lines` code-looking lines in all, no run can be that long: [] without the regex."""
    lines = text.split("\n")
    cand = [
        i for i, line in enumerate(lines) if line.lstrip(" \t").startswith(_STARTS) or line.rstrip().endswith(_ENDS)
    ]
    if len(cand) < max(min_lines, 1):
        return []
    code = [i for i in cand if lines[i].strip() and _CODE_LINE.match(lines[i]) and not _LATEX.search(lines[i])]
    if len(code) < max(min_lines, 1):
        return []
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    runs, first, prev, count = [], code[0], code[0], 1
    for i in code[1:]:
        if all(not lines[j].strip() for j in range(prev + 1, i)):  # only blank lines between: the run goes on
            count += 1
        else:
            runs.append((count, offsets[first], offsets[prev] + len(lines[prev])))
            first, count = i, 1
        prev = i
    runs.append((count, offsets[first], offsets[prev] + len(lines[prev])))
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
    runs = _runs(text, max_code_lines + 1)
    longest = max(runs, default=None)
    if longest and longest[0] > max_code_lines:
        verdict = Verdict.drop("code_block", kind="unfenced", lines=longest[0])
        rule = {"max_code_lines": max_code_lines}
        verdict.evidence = evidence("reasoning", reasoning, longest[1], longest[2], rule, lines=longest[0])
        return verdict
    return Verdict.ok()


register("code_block", code_block)
