"""Math grading: read the answer with math-verify and compare it with the reference (no deadline here).

Everything in this module runs inside a `MathPool` worker (`r1distill.grading.pool`), which bounds each item by a
hard outside deadline: math-verify's own timeout relies on `signal.alarm` and has been reported to hang anyway, so
it is switched off (`parsing_timeout=None`, `timeout_seconds=None`). Call these functions directly only where a
hang is acceptable (tests, small trusted inputs).

`grade_final` grades a final-answer text: math-verify's extraction (LaTeX, then expressions, boxed first) reads the
answer. Our own rules around it are kept where they measurably add; the figure is the cases of tests/data/grader_suites
(480) each one wins, measured by switching it off:
- a bare answer with no delimiters (`x^2+2x+1`, `918\\frac{1}{2}`) is parsed whole, not mined for its last
  number: +33 (NeMo-Skills 22, Qwen2.5-Math 8, MATH 3);
- a reference's boxes connected by "and"/"," are one answer (`\\boxed{1}\\boxed{2}` = `1, 2`; `\\boxed{1} no no no
  no no \\boxed{2}` is 2): +7 (Math-Verify 5, lighteval 2); see `answer.reference_answer`;
- plain-word units and a trailing `\\` dropped (`18 dollars`, `185\\`): +2 (NeMo-Skills);
- a letter reference without a choice pattern in the answer goes to math-verify (`\\mathrm{E}` = `E`): +2 (NeMo);
- set/relation comparison both ways (`x > 2` vs `(2,\\infty)`): +1 (Math-Verify), and issue 19's case;
- exact numbers compared without math-verify (`_rational`), and brackets element by element: +1 each (Qwen's
  `(0.6,2.6667]` = `(\\frac{3}{5},\\frac{8}{3}]`), plus issue 19's `-50\\%` = `-0.5` = `-50`, `58,500`, `1,22`,
  `4.666667` = 14/3 (tests/test_math_verifier.py::NEW_USER) and most of the speed;
- unicode `°`, `−`, `≤`, `∞`, `π` as LaTeX: 0 in the suites, issue 19's `90°` vs `90^\\circ` (NEW_USER);
- `_far_apart` (plain numbers far apart skip sympy's simplify): 0 verdicts by design, speed only.
"""

from __future__ import annotations

import logging
import re
from fractions import Fraction
from functools import lru_cache
from typing import Any

from r1distill.grading.answer import MAX_ANSWER_CHARS, MAX_DEPTH, max_depth

log = logging.getLogger(__name__)

CORRECT, WRONG, TIMEOUT, ERROR = "correct", "wrong_answer", "timeout", "grader_error"
NO_ANSWER, UNPARSEABLE = "no_answer", "unparseable"
_SPACES = re.compile(r"\s+|\\[,;:! ]|\\left|\\right|\\?\$")
_WRAPPER = re.compile(r"\\(?:textbf|mathbf|boldsymbol)\{([^{}]*)\}")
_PLAIN_UNITS = re.compile(r"^(-?\d[\d,]*(?:\.\d+)?)\s+((?:[A-Za-z]{2,}\.?\s*){1,3})$")
_MATH_WORDS = {"pi", "sqrt", "sin", "cos", "tan", "cot", "sec", "csc", "log", "ln", "exp", "inf", "infty", "mod"}
_NUMBER = re.compile(
    r"^(?:[A-Za-z](?:_\{?\w+\}?)?=)?(-?)(?:\\[dt]?frac\{(\d+)\}\{(\d+)\}|(\d+(?:\.(\d+))?|\.(\d+))(?:/(\d+))?)"
    r"(\\?%|\^\\circ|\^\{\\circ\}|°)?$"
)
_ASSIGNED = re.compile(r"^[A-Za-z](?:_\{?\w+\}?)?=")
_THOUSANDS = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_INTEGER = re.compile(r"-?(?:[1-9]\d{0,14}|0)")
_SPACED_COMMA = re.compile(r",\s")
_BRACKETED = re.compile(r"^([(\[])([^()\[\]]*)([)\]])$")
_DECIMAL_COMMA = re.compile(r"-?\d+,\d+")
_POINT = (0.5772156649, 1.3247179572, 2.7182818284, 0.3183098861, 1.6180339887, 0.8414709848)  # no special values
_UNICODE = {"°": "^{\\circ}", "−": "-", "≤": "\\le ", "≥": "\\ge ", "≠": "\\neq ", "∞": "\\infty ", "π": "\\pi "}
_DELIMITED = re.compile(r"(?<!\\)\$|\\\(|\\\[|\\boxed|\\fbox")
_WORDS = re.compile(r"(?<![\\a-zA-Z])[A-Za-z]{2,}\s+[A-Za-z]{2,}")


class _NoTimeoutWarning(logging.Filter):
    """math-verify warns that its timeout is off; here that is deliberate (the pool bounds each item from outside)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_NoTimeoutWarning())


def _latex(text: str) -> str:
    """Unicode math written as LaTeX (`90°` as `90^{\\circ}`)."""
    if text.isascii():  # nearly every answer: skip the replacements
        return text
    for char, latex in _UNICODE.items():
        text = text.replace(char, latex)
    return text


def _unwrap(text: str) -> str:
    """Drop presentation-only wrappers (`\\textbf{..}`, `\\displaystyle`, a trailing `\\`) and plain-word units
    after a number ("18 dollars": math-verify strips units only inside `\\text{}`) before any comparison."""
    text = _WRAPPER.sub(r"\1", _latex(text)).replace("\\displaystyle", "").strip().rstrip("\\").strip()
    m = _PLAIN_UNITS.match(text)
    if m and not set(m.group(2).lower().replace(".", " ").split()) & _MATH_WORDS:
        return m.group(1)
    return text


def _normalise(text: str) -> str:
    """A conservative textual form: strings equal after this are the same answer, whatever math-verify says."""
    text = _SPACES.sub("", text)
    text = text.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    return text.rstrip(".")


def _config() -> list[Any]:
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    return [LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig()]


@lru_cache(maxsize=8192)
def _parse(text: str) -> list[Any]:
    """math-verify's reading of one answer: wrapped in \\boxed so the whole string is one LaTeX answer (units,
    \\text, %, ...); the expression config catches plain-text answers such as "1/2" or "3.5"."""
    from math_verify import parse

    if _INTEGER.fullmatch(text):  # what math-verify returns for a plain integer, without its LaTeX parser (~30 ms)
        from sympy import Integer

        return [Integer(int(text)), text]
    return parse("\\boxed{" + text + "}", _config(), parsing_timeout=None)


@lru_cache(maxsize=8192)
def _parse_text(text: str) -> list[Any]:
    """math-verify's own extraction over a whole text (LaTeX environments, "final answer is", numbers)."""
    from math_verify import parse

    return parse(text, _config(), parsing_timeout=None)


def parse_gold(gold: str) -> list[Any]:
    """A reference read once per worker (cached): whole when it is a bare answer, else by math-verify's
    extraction (references such as `$\\frac{NO}{BO}=\\frac{1}{\\sqrt{6}}$` carry their own delimiters)."""
    gold = _unwrap(gold)
    if _DELIMITED.search(gold):
        return _parse_text(gold) or _parse(gold)
    return _parse(gold) or _parse_text(gold)


def _rational(text: str) -> tuple[Fraction, int, bool] | None:
    """(exact value, decimal places written, is a percent) of a plain number (`-12`, `3.50`, `7/2`, `\\frac{7}{2}`,
    `1,000`, `50\\%`, `90^\\circ`, `x=5`), else None."""
    if len(text) > 100:  # beyond any real answer; also keeps int() clear of Python's digit limit
        return None
    m = _NUMBER.match(text.replace(",", "") if _THOUSANDS.fullmatch(_ASSIGNED.sub("", text)) else text)
    if not m:
        return None
    sign, num, den, plain, places, bare_places, over, suffix = m.groups()
    try:
        value = Fraction(int(num), int(den)) if num else Fraction(plain) / (int(over) if over else 1)
    except ZeroDivisionError:
        return None
    decimals = 0 if over else len(places or bare_places or "")
    return (-value if sign else value), decimals, bool(suffix and "%" in suffix)


def _numbers_equal(pred: tuple[Fraction, int, bool], gold: tuple[Fraction, int, bool]) -> bool:
    """Exact comparison, but a decimal of 4+ places equals the exact value it rounds (`4.666667` = 14/3, as
    math-verify's rounding allows, and `2.6667` = 8/3), and a percent equals its number or its fraction."""
    (p, p_places, p_pct), (g, g_places, g_pct) = pred, gold
    p_values = [p, p / 100] if p_pct and not g_pct else [p]
    g_values = [g, g / 100] if g_pct and not p_pct else [g]
    places = max(p_places, g_places)
    slack = Fraction(1, 2 * 10**places) if places >= 4 else 0
    return any(abs(a - b) <= slack for a in p_values for b in g_values)


def _same_brackets(pred: str, gold: str) -> bool:
    """Two intervals or tuples of plain numbers, equal element by element by `_numbers_equal` (so `(0.6,2.6667]`
    equals `(\\frac{3}{5},\\frac{8}{3}]`: math-verify's 6-place rounding misses 4-place decimals inside brackets)."""
    p, g = _BRACKETED.match(pred), _BRACKETED.match(gold)
    if not (p and g) or p.group(1) != g.group(1) or p.group(3) != g.group(3):
        return False
    p_parts, g_parts = p.group(2).split(","), g.group(2).split(",")
    if len(p_parts) != len(g_parts) or len(p_parts) > 10:
        return False
    p_nums, g_nums = [_rational(x) for x in p_parts], [_rational(x) for x in g_parts]
    if None in p_nums or None in g_nums:
        return False
    return all(_numbers_equal(a, b) for a, b in zip(p_nums, g_nums, strict=True))  # type: ignore[arg-type]


def _value(expr: Any, point: dict[Any, float]) -> complex | None:
    """The numeric value of a sympy expression at `point` (15 digits), or None where it has none."""
    from sympy import N

    try:
        value = complex(N(expr.subs(point) if point else expr, 15))
    except (TypeError, ValueError, OverflowError, ZeroDivisionError, AttributeError):
        return None
    return value if value == value and abs(value) != float("inf") else None


def _far_apart(gold: list[Any], pred: list[Any]) -> bool:
    """True when math-verify would surely say unequal: every pairing of the two readings is two different strings,
    or two expressions whose values differ by far more than any rounding math-verify accepts, at numbers or (with
    variables) at one fixed point, where symbolically equal expressions would agree. sympy's simplify, most of the
    time of an unequal verdict, is then skipped."""
    from sympy import Expr, Symbol

    for g in gold:
        for p in pred:
            if isinstance(g, str) and isinstance(p, str):
                if g.strip() == p.strip():
                    return False
                continue
            if isinstance(g, str) or isinstance(p, str):
                continue
            if not (isinstance(g, Expr) and isinstance(p, Expr)) or isinstance(g, Symbol) or isinstance(p, Symbol):
                return False
            names = sorted(g.free_symbols | p.free_symbols, key=str)
            if len(names) > len(_POINT):
                return False
            point = dict(zip(names, _POINT, strict=False))
            a, b = _value(g, point), _value(p, point)
            if a is None or b is None or not abs(a - b) > 1e-5 * max(1.0, abs(a), abs(b)):
                return False
    return True


def _verify(gold: list[Any], pred: list[Any], texts: tuple[str, str], shortcuts: bool) -> bool:
    from math_verify import verify

    if not gold or not pred:
        return False
    if shortcuts and not any("%" in t or "percent" in t.lower() for t in texts) and _far_apart(gold, pred):
        return False
    return bool(verify(gold, pred, allow_set_relation_comp=True, timeout_seconds=None))


def math_equal(pred: str, gold: str, shortcuts: bool = True) -> bool:
    """True when the extracted answer `pred` is mathematically equal to the gold answer `gold` (both strings).

    Plain numbers on both sides are compared exactly without math-verify (most GSM8K/AIME/MATH answers: fast and
    certain); everything else goes through math-verify's parse + verify. `shortcuts=False` always asks math-verify.
    """
    pred, gold = _unwrap(pred), _unwrap(gold)
    if not pred or not gold:
        return False
    if shortcuts:
        p_norm, g_norm = _normalise(pred), _normalise(gold)
        if p_norm == g_norm:
            return True
        # `32, 349` is a list (as math-verify reads it), `32,349` a number
        p_num = None if _SPACED_COMMA.search(pred) else _rational(p_norm)
        g_num = None if _SPACED_COMMA.search(gold) else _rational(g_norm)
        if p_num is None and g_num is not None and _DECIMAL_COMMA.fullmatch(p_norm):
            p_num = _rational(p_norm.replace(",", "."))  # `1,22` for a single-number reference: a decimal comma
        if p_num is not None and g_num is not None:
            return _numbers_equal(p_num, g_num)
        if _same_brackets(p_norm, g_norm):
            return True
    return _verify(parse_gold(gold), _parse(pred), (pred, gold), shortcuts)


def refuse(answer: str) -> str | None:
    """Why an extracted answer is not graded (too long, nested too deep), else None."""
    if len(answer) > MAX_ANSWER_CHARS:
        return f"answer of {len(answer)} characters (limit {MAX_ANSWER_CHARS})"
    depth = max_depth(answer)
    return f"nested {depth} deep (limit {MAX_DEPTH})" if depth > MAX_DEPTH else None


def _bare(text: str) -> bool:
    """A final answer that is only the answer (`x^2+2x+1`, `18 dollars`): one short line, no math delimiters, no
    run of words. Such a text is read whole; math-verify's extraction would take its last number."""
    return len(text) <= 200 and "\n" not in text and not _DELIMITED.search(text) and not _WORDS.search(text)


def _read(text: str, gold: str, shortcuts: bool) -> tuple[str, str | None] | None:
    """(reason, extracted) by math-verify's extraction over `text`, or None when it finds nothing."""
    pred = _parse_text(text)
    if not pred:
        return None
    # the matched text, without the sentence's full stop that math-verify's expression match keeps ("1/2.")
    extracted = (pred[-1] if isinstance(pred[-1], str) else str(pred[0])).strip().rstrip(".").strip()
    if refuse(extracted):
        return UNPARSEABLE, extracted[:200]
    if shortcuts and "%" not in text and _rational(_normalise(_unwrap(extracted))) is not None:
        if _rational(_normalise(_unwrap(gold))) is not None:
            return (CORRECT if math_equal(extracted, gold, shortcuts) else WRONG), extracted
    return (CORRECT if _verify(parse_gold(gold), pred, (text, gold), shortcuts) else WRONG), extracted


def grade_final(found: tuple[str, ...], text: str, gold: str, shortcuts: bool = True) -> tuple[str, str | None]:
    """(reason, extracted answer): `correct`, `wrong_answer`, `no_answer` or `unparseable`.

    `found` are the complete boxes of the final answer (`answer.boxes`). With `text` empty the last box is the
    answer; otherwise (no box, several boxes, a "final answer is" after the box) math-verify's extraction reads
    `text`: it joins boxes connected by "and"/","/one math environment (`\\boxed{1} and \\boxed{-2}` = `1,-2`)
    and prefers a closing "The final answer is $10,455$" over a box earlier in the text.
    """
    text = _latex(text.strip())
    if text:
        if _bare(text) and not found:
            return (CORRECT if math_equal(text, gold, shortcuts) else WRONG), text
        got = _read(text, gold, shortcuts)
        if got is not None:
            return got
    if not found:
        return NO_ANSWER, None
    answer = found[-1]
    if refuse(answer):
        return UNPARSEABLE, answer[:200]
    return (CORRECT if math_equal(answer, gold, shortcuts) else WRONG), answer


def __getattr__(name: str) -> Any:
    """`MathPool` lives in `pool` (which imports this module); still importable from here, as callers always did."""
    if name == "MathPool":
        from r1distill.grading.pool import MathPool

        return MathPool
    raise AttributeError(name)
