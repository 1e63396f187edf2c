"""Answers built to stall or fool the grader (issue 18): each is graded within its deadline and earns nothing.

The wall-clock bounds are loose (3x the deadline) on purpose: they catch a stall of tens of seconds, not jitter.
"""

from __future__ import annotations

import time
from dataclasses import asdict

import pytest

from r1distill.core.records import Sample
from r1distill.evaluate.stage import score
from r1distill.grading import Grader
from r1distill.grading.answer import boxes, screen
from r1distill.train.rewards import accuracy_reward

DEADLINE_S = 2.0
MEGABYTE = 1 << 20
UNCLOSED = "\\boxed{" * (MEGABYTE // 7)  # a teacher cut at its token limit inside a runaway answer
SHAPES = {
    "unclosed boxed, 1 MB": (UNCLOSED, "1"),
    "unclosed boxed after a real box, 1 MB": ("\\boxed{1} " + UNCLOSED, "2"),
    "frac nested 300 deep around 2": ("\\boxed{" + "\\frac{" * 300 + "2" + "}{1}" * 300 + "}", "\\frac{1}{2}"),
    "frac nested 500 deep, unboxed": ("$" + "\\frac{1}{" * 500 + "2" + "}" * 500 + "$", "\\frac{1}{2}"),
    "parentheses 3000 deep": ("\\boxed{" + "(" * 3000 + "2" + ")" * 3000 + "}", "2"),
    "a 50 KB box": ("\\boxed{" + "1+" * 25_000 + "1}", "25001"),
    "junk around a digit": ("AZYUK2A", "2"),
}


def _sample(i: int, completion: str, reference: str) -> Sample:
    return Sample(f"adv/{i}/0", "adv", str(i), 0, "math", "", [], reference, completion, {"finish_reason": "stop"})


@pytest.fixture(scope="module")
def grader():
    with Grader(math_timeout_s=DEADLINE_S, workers=2) as g:
        g.grade([_sample(0, "\\boxed{1}", "1")])  # workers up before any clock starts
        yield g


def test_screening_is_linear():
    start = time.monotonic()
    assert boxes(UNCLOSED * 4) == []
    text, refused = screen(UNCLOSED * 4)
    assert refused and len(text) < MEGABYTE
    assert time.monotonic() - start < 3 * DEADLINE_S


@pytest.mark.parametrize("path", ["verify", "rl_reward", "evaluate"])
def test_a_megabyte_of_unclosed_boxes_is_graded_within_the_deadline(grader, path):
    completion = "<think>\nlong thinking\n</think>\n\n" + UNCLOSED
    start = time.monotonic()
    if path == "verify":
        (grade,) = grader.grade([_sample(1, completion, "1")])
        ok, reason = grade.correct, grade.reason
    elif path == "rl_reward":
        (reward,) = accuracy_reward([completion], ["1"], grader=grader)
        ok, reason = reward > 0, "reward"
    else:
        (record,) = score([asdict(_sample(1, completion, "1"))], grader)
        ok, reason = record["grade"]["correct"], record["grade"]["reason"]
    elapsed = time.monotonic() - start
    print(f"{path}: 1 MB unclosed \\boxed{{ graded {reason} in {elapsed:.2f}s (deadline {DEADLINE_S}s)")
    assert not ok
    assert reason in ("unparseable", "timeout", "reward")
    assert elapsed < 3 * DEADLINE_S


def test_no_adversarial_shape_earns_a_reward(grader):
    completions = [f"<think>\nx\n</think>\n\n{text}" for text, _ in SHAPES.values()]
    references = [gold for _, gold in SHAPES.values()]
    start = time.monotonic()
    rewards = accuracy_reward(completions, references, grader=grader)
    grades = grader.grade([_sample(i, c, r) for i, (c, r) in enumerate(zip(completions, references, strict=True))])
    elapsed = time.monotonic() - start
    assert dict(zip(SHAPES, rewards, strict=True)) == dict.fromkeys(SHAPES, 0.0)
    reasons = dict(zip(SHAPES, (g.reason for g in grades), strict=True))
    assert reasons["frac nested 300 deep around 2"] == "unparseable"
    assert reasons["frac nested 500 deep, unboxed"] == "unparseable"
    assert reasons["parentheses 3000 deep"] == "unparseable"
    assert reasons["a 50 KB box"] in ("unparseable", "timeout")  # cut to its tail, the box is open: math-verify reads
    assert reasons["junk around a digit"] in ("no_answer", "wrong_answer")
    # every shape, graded twice, two at a time, each bounded by its deadline
    assert elapsed < 3 * DEADLINE_S * len(SHAPES)


def test_the_nested_frac_was_the_hack_and_a_sane_nesting_still_grades(grader):
    """The innermost-value reading is what made the nested \\frac a reward hack; a real nested answer still grades."""
    sane = "\\boxed{\\frac{1}{1+\\frac{1}{1+\\frac{1}{2}}}}"  # = 3/5
    assert [g.reason for g in grader.grade([_sample(2, sane, "\\frac{3}{5}"), _sample(3, sane, "2")])] == [
        "correct",
        "wrong_answer",
    ]
