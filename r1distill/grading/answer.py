"""Answer extraction: the one parser that turns a completion into the answer a grader compares.

Every stage (verify, rl rewards, evaluate) goes through these functions, so a sample is judged the same way
everywhere. The final answer is the text after `</think>` (split by `records.parse_completion`).

Everything here runs in the calling process, outside the math pool's deadline, so every function is linear in its
input (a teacher cut at its token limit can leave a megabyte of unclosed `\\boxed{`): `screen` refuses text no real
answer looks like, `boxes` finds the complete boxes in one pass. Reading the answer itself (math-verify's LaTeX and
expression extraction) happens in the pool, under the deadline (`r1distill.grading.math`).

`extract_answer` is the cheap reading without math-verify (last box, "the answer is", last free-standing number),
`extract_choice` reads a multiple-choice letter (GPQA-style), `extract_code` the last fenced code block and
`reference_answer` normalises gold answers (GSM8K `#### N`, MATH solutions with `\\boxed{}`, plain values).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from r1distill.core.records import parse_completion
from r1distill.core.text import FENCE

# A final answer is graded on its last MAX_TEXT_CHARS characters: the answer sits at the end, and every later step
# (regexes, IPC) then costs a bounded amount whatever the teacher wrote.
MAX_TEXT_CHARS = 16_384
# Beyond these an answer is refused (`unparseable`): no benchmark answer comes near them (MATH-500's longest answer
# is 53 characters, nested 2 deep; its worked solutions nest 6 deep at most), while a `\\frac` nested hundreds deep
# makes math-verify read only the innermost value (issue 18: such an answer was graded correct against 1/2).
MAX_ANSWER_CHARS = 1_000
MAX_DEPTH = 24

_BOX = re.compile(r"\\(?:boxed|fbox)\s*(\{|\s)")
_ANSWER_IS = re.compile(
    r"(?:final\s+answer|the\s+answer|answer)\s*(?:is|:|=)\s*:?\s*(.+)",
    re.IGNORECASE,
)
# A free-standing number: not glued to letters on either side ("AZYUK2A" holds no answer)
_NUMBER = re.compile(r"(?<![\w.])-?(?:\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?|\.\d+)(?![\w])")
_PY_TAGS = {"python", "py", "python3", "py3"}
_CHOICE_PATTERNS = [
    re.compile(r"\\(?:boxed|fbox)\s*\{\s*(?:\\text(?:bf)?\s*\{\s*)?\(?([A-J])\)?\s*\}?\s*\}"),
    re.compile(r"answer\s*(?:is|:)\s*(?:option\s*)?[*(\[]*\s*([A-J])\b(?![a-z])", re.IGNORECASE),
    re.compile(r"(?:^|\s)\(([A-J])\)(?=[\s.,;:!]|$)"),
    re.compile(r"^\s*\**\s*([A-J])\s*[.):\]]?\s*\**\s*$", re.MULTILINE),
]
_OPEN, _CLOSE = "{([", "})]"
_CONNECTOR_NOISE = re.compile(r"\$+|\\[()\[\]]|\\q?quad|\\text\s*\{|[{},;.:\s]|\\[,;!]")


@dataclass(frozen=True)
class Extraction:
    """An extracted answer and how it was found (`boxed`, `answer_is`, `last_number`, `choice`, `code`)."""

    value: str
    method: str


def final_answer_text(completion: str) -> str:
    """The part of a completion that holds the answer: the text after `</think>`.

    A completion cut inside its `<think>` block has no answer (empty string); one without think tags is all answer.
    """
    return parse_completion(completion).answer


def max_depth(text: str) -> int:
    """The deepest nesting of unescaped brackets `{ ( [` in `text`, counting unclosed ones (one pass)."""
    depth = deepest = 0
    escaped = False
    for ch in text:
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif ch in _CLOSE and depth:
            depth -= 1
    return deepest


def screen(text: str) -> tuple[str, str | None]:
    """(`text` cut to its last MAX_TEXT_CHARS characters, None) or (`text`, why it is refused): the linear checks
    that run before any parser sees an answer."""
    text = text[-MAX_TEXT_CHARS:]
    depth = max_depth(text)
    if depth > MAX_DEPTH:
        return text, f"nested {depth} deep (limit {MAX_DEPTH})"
    return text, None


def _box_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of every complete top-level `\\boxed{...}` / `\\fbox{...}` (or `\\boxed x`), in order.

    One pass over the text with a stack of open braces, so a megabyte of unclosed `\\boxed{` costs no more than
    reading it. A box inside another box counts once (as part of the outer one); a complete box inside an unclosed
    one counts. Empty boxes are skipped: small models echo "put your final answer within \\boxed{}".
    """
    opens: set[int] = set()
    spans: list[tuple[int, int, str]] = []
    for m in _BOX.finditer(text):
        if m.group(1) == "{":
            opens.add(m.start(1))
        else:
            word = re.match(r"\s*([^\s$]+)", text[m.end(1) : m.end(1) + 200])
            if word:
                spans.append((m.start(), m.end(1) + word.end(), word.group(1)))
    stack: list[int] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            stack.append(i if i in opens else -1)
        elif ch == "}" and stack:
            start = stack.pop()
            if start >= 0:
                spans.append((start, i, text[start + 1 : i].strip()))
        i += 1
    top: list[tuple[int, int, str]] = []
    end = -1
    for start, stop, content in sorted(spans):
        if start > end:
            end = stop
            if content:
                top.append((start, stop, content))
    return top


def boxes(text: str) -> list[str]:
    """The contents of every complete, non-empty top-level box, in order (see `_box_spans`)."""
    return [content for _, _, content in _box_spans(text)]


def _last_run(text: str) -> str | None:
    """The last box, joined by ", " with the boxes just before it that only a short connector ("and", "or", commas,
    spacing, math delimiters) separates from it (`\\boxed{2} and \\boxed{3}`, not `\\boxed{1} no no no no no
    \\boxed{2}`), else None."""
    spans = _box_spans(text)
    if not spans:
        return None
    run = [spans[-1]]
    for span in reversed(spans[:-1]):
        gap = text[span[1] + 1 : run[0][0]]
        gap = _CONNECTOR_NOISE.sub(" ", re.sub(r"\\(?:boxed|fbox)\s*$", "", gap)).strip()
        # a connector is short and holds no number: `and`, `or`, `papers and` join; `and and and or thus but`
        # and `no no no no no` do not (where math-verify's and lighteval's own cases put the boundary)
        if len(gap) > 12 or any(ch.isdigit() for ch in gap) or len(run) >= 20:
            break
        run.insert(0, span)
    return ", ".join(dict.fromkeys(content for _, _, content in run))


def last_boxed(text: str) -> str | None:
    """Content of the last complete, non-empty `\\boxed{...}` / `\\fbox{...}` (or `\\boxed x`), else None."""
    found = boxes(text)
    return found[-1] if found else None


def _clean_phrase(value: str) -> str:
    """Strip the wrapping around an answer phrase: markdown bold, `$...$`, `\\(...\\)`, a final period."""
    previous = None
    while previous != value:
        previous = value
        value = value.strip().strip("*").rstrip(".").strip()
        value = re.sub(r"^\$+|\$+$", "", value)
        value = re.sub(r"^\\[(\[]|\\[)\]]$", "", value)
    return value


def extract_answer(text: str) -> Extraction | None:
    """The answer inside a final-answer text without math-verify: the last box, else the last "the answer is"
    phrase, else the last free-standing number; None when there is none. (Grading reads answers with math-verify
    in the pool; this is the quick reading for reports and for references.)"""
    boxed = last_boxed(text)
    if boxed is not None:
        return Extraction(boxed, "boxed")
    phrases = list(_ANSWER_IS.finditer(text))
    if phrases:
        value = _clean_phrase(phrases[-1].group(1))
        if value:
            return Extraction(value, "answer_is")
    numbers = _NUMBER.findall(text)
    if numbers:
        return Extraction(re.sub(r"[,\s]", "", numbers[-1]), "last_number")
    return None


def extract_choice(text: str, letters: str = "ABCDEFGHIJ") -> Extraction | None:
    """A multiple-choice letter: `\\boxed{C}`, "the answer is (C)", "(C)", or a line holding only the letter.

    The last match of the most specific pattern wins; letters outside `letters` are ignored.
    """
    for pattern in _CHOICE_PATTERNS:
        hits = [m.group(1).upper() for m in pattern.finditer(text) if m.group(1).upper() in letters]
        if hits:
            return Extraction(hits[-1], "choice")
    return None


def extract_code(text: str) -> Extraction | None:
    """The last fenced code block tagged python (or untagged, when no block is tagged python), else None."""
    blocks = [(m.group("lang").lower(), m.group("body")) for m in FENCE.finditer(text)]
    for wanted in (_PY_TAGS, {""}):
        chosen = [body for tag, body in blocks if tag in wanted]
        if chosen:
            return Extraction(chosen[-1], "code")
    return None


def reference_answer(reference: object) -> str:
    """A gold answer as a string: the number after GSM8K's `####`, the last box of a MATH-style solution (with the
    boxes connected to it by "and"/",": a multi-part answer), or the value itself (AMC's floats, AIME's integers)."""
    if isinstance(reference, float) and reference.is_integer():
        return str(int(reference))
    text = str(reference).strip()
    if "####" in text:
        return text.rsplit("####", 1)[1].strip().replace(",", "")
    run = _last_run(text)
    return run if run is not None else text
