"""Answer extraction: the one parser that turns a completion into the answer a grader compares.

Every stage (verify, rl rewards, evaluate) goes through these functions, so a sample is judged the same way
everywhere. The final answer is the text after `</think>` (split by `records.parse_completion`); inside it the
answer is, in order of preference:

1. the last `\\boxed{...}` or `\\fbox{...}` (nested braces allowed; also `\\boxed 5`),
2. the last "The answer is ..." / "Final answer: ..." phrase,
3. the last number.

`extract_choice` reads a multiple-choice letter (GPQA-style), `extract_code` the last fenced code block and
`reference_answer` normalises gold answers (GSM8K `#### N`, MATH solutions with a `\\boxed{}`, plain values).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from r1distill.core.records import parse_completion
from r1distill.core.text import FENCE

_BOX = re.compile(r"\\(?:boxed|fbox)\s*(\{|\s)")
_ANSWER_IS = re.compile(
    r"(?:final\s+answer|the\s+answer|answer)\s*(?:is|:|=)\s*:?\s*(.+)",
    re.IGNORECASE,
)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+")
_PY_TAGS = {"python", "py", "python3", "py3"}
_CHOICE_PATTERNS = [
    re.compile(r"\\(?:boxed|fbox)\s*\{\s*(?:\\text(?:bf)?\s*\{\s*)?\(?([A-J])\)?\s*\}?\s*\}"),
    re.compile(r"answer\s*(?:is|:)\s*(?:option\s*)?[*(\[]*\s*([A-J])\b(?![a-z])", re.IGNORECASE),
    re.compile(r"(?:^|\s)\(([A-J])\)(?=[\s.,;:!]|$)"),
    re.compile(r"^\s*\**\s*([A-J])\s*[.):\]]?\s*\**\s*$", re.MULTILINE),
]


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


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """Content of the brace group opening at `text[start] == "{"`, honouring nesting and `\\{`, or None if unclosed."""
    depth = 0
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i], i + 1
        i += 1
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last complete, non-empty `\\boxed{...}` / `\\fbox{...}` (or `\\boxed x`), else None.

    Empty boxes are skipped: small models echo the instruction "put your final answer within \\boxed{}".
    """
    found = None
    for m in _BOX.finditer(text):
        if m.group(1) == "{":
            got = _braced(text, m.start(1))
            if got is not None and got[0].strip():
                found = got[0]
        else:
            word = re.match(r"\s*([^\s$]+)", text[m.end(1) :])
            if word:
                found = word.group(1)
    return found.strip() if found is not None else None


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
    """The answer inside a final-answer text (see the module docstring for the order), or None when there is none."""
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
    """A gold answer as a string: the number after GSM8K's `####`, the last `\\boxed{}` of a MATH-style solution,
    or the value itself (AMC's floats, AIME's integers)."""
    if isinstance(reference, float) and reference.is_integer():
        return str(int(reference))
    text = str(reference).strip()
    if "####" in text:
        return text.rsplit("####", 1)[1].strip().replace(",", "")
    boxed = last_boxed(text)
    return boxed if boxed is not None else text
