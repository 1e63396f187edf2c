"""Math grading for real: math-verify in the worker pool, on the benchmark references and on hand-picked pairs."""

from __future__ import annotations

import json
import time

import pytest

from r1distill.core.records import Sample
from r1distill.grading import Grader
from r1distill.grading.answer import extract_answer, last_boxed, reference_answer
from r1distill.grading.math import MathPool, math_equal


def _rows(shared_dir, name):
    path = shared_dir / "benchmarks" / name
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return [json.loads(line) for line in path.open(encoding="utf-8")]


@pytest.fixture(scope="module")
def pool():
    with MathPool(workers=2, timeout_s=5) as p:
        yield p


def test_math500_references_verify_against_themselves_and_their_solutions(shared_dir, pool):
    rows = _rows(shared_dir, "math500.jsonl")
    pairs = [(r["answer"], r["answer"]) for r in rows] + [(last_boxed(r["solution"]), r["answer"]) for r in rows]
    results = pool.grade(pairs)
    failures = [(p, reason) for p, (reason, _) in zip(pairs, results, strict=True) if reason != "correct"]
    assert len(pairs) == 1000 and failures == []


def test_math500_references_pass_math_verify_itself_without_shortcuts(shared_dir):
    """The string/number shortcuts are off here: every MATH-500 answer must parse and verify through math-verify."""
    rows = _rows(shared_dir, "math500.jsonl")
    assert [r["answer"] for r in rows if not math_equal(r["answer"], r["answer"], shortcuts=False)] == []


def test_gsm8k_references_verify_against_their_final_number(shared_dir, pool):
    rows = _rows(shared_dir, "gsm8k_test.jsonl")
    # the pred is what the extractor finds in the worked solution (its last number, after "####")
    pairs = [(extract_answer(r["answer"]).value, reference_answer(r["answer"])) for r in rows]
    results = pool.grade(pairs)
    assert len(rows) == 1319 and all(reason == "correct" for reason, _ in results)
    # and an off-by-one answer is wrong for every problem
    wrong = pool.grade([(str(int(float(g)) + 1), g) for _, g in pairs])
    assert all(reason == "wrong_answer" for reason, _ in wrong)


def test_aime_and_amc_answers(shared_dir, pool):
    aime = _rows(shared_dir, "aime24.jsonl") + _rows(shared_dir, "aime25.jsonl")
    amc = _rows(shared_dir, "amc23.jsonl")
    pairs = [(str(r["answer"]), reference_answer(r["answer"])) for r in aime]
    solved = [(last_boxed(r.get("solution") or ""), r["answer"]) for r in aime]
    pairs += [(boxed, reference_answer(answer)) for boxed, answer in solved if boxed]
    pairs += [
        (str(int(r["answer"])) if float(r["answer"]).is_integer() else str(r["answer"]), r["answer"]) for r in amc
    ]
    pairs = [(p, str(g)) for p, g in pairs]
    assert len(pairs) >= 100
    assert [p for p, (reason, _) in zip(pairs, pool.grade(pairs), strict=True) if reason != "correct"] == []


EQUIVALENT = [
    ("0.5", r"\frac{1}{2}"),
    ("1/2", r"\frac12"),
    (r"\dfrac{3}{4}", "0.75"),
    (r"\frac{-1}{2}", "-0.5"),
    ("0.333333", r"\frac13"),
    (r"\frac{14}{3}", r"4\frac{2}{3}"),
    (r"\frac{\sqrt{3}}{2}", r"\frac{1}{2}\sqrt{3}"),
    (r"2\sqrt{2}", r"\sqrt{8}"),
    (r"3\sqrt{2}", r"\sqrt{18}"),
    ("50\\%", "50"),
    ("50\\%", "0.5"),
    (r"10\text{ cm}", "10"),
    (r"5 \text{ meters}", "5"),
    ("18 dollars", "18"),
    ("3 square feet", "3"),
    (r"\$18.90", "18.90"),
    ("1,000", "1000"),
    (r"[2, 5)", r"[2,5)"),
    (r"(0,1) \cup (2,3)", r"(2,3)\cup(0,1)"),
    (r"\{1, 2, 3\}", r"\{3, 2, 1\}"),
    (r"\left( 3, \frac{\pi}{2} \right)", r"(3, \frac{\pi}{2})"),
    (r"x^2+2x+1", r"(x+1)^2"),
    (r"\pi/2", r"\frac{\pi}{2}"),
    (r"2^{10}", "1024"),
    (r"x = 5", "5"),
    (r"\text{(B)}", "B"),
    (r"\textbf{(073)}", "73"),
]
NOT_EQUIVALENT = [
    ("0.5", r"\frac{1}{3}"),
    ("0.33", r"\frac13"),
    ("3/4", "4/3"),
    (r"\sqrt{2}", "2"),
    (r"3\sqrt{2}", r"2\sqrt{3}"),
    ("50\\%", "5"),
    (r"10\text{ cm}", "100"),
    ("18 dollars", "19"),
    ("2 pi", "2"),
    (r"[2,5)", r"(2,5]"),
    (r"(-\infty, 3)", r"(-\infty, 3]"),
    (r"\{1,2\}", r"\{1,2,3\}"),
    (r"(1,2)", r"(2,1)"),
    (r"x^2+1", r"(x+1)^2"),
    ("2", "-2"),
    (r"\frac{\pi}{2}", r"\pi"),
    ("x=5", "6"),
]


@pytest.mark.parametrize("shortcuts", [True, False])
def test_tricky_pairs(pool, shortcuts):
    if shortcuts:
        got_eq = [r for r, _ in pool.grade(EQUIVALENT)]
        got_ne = [r for r, _ in pool.grade(NOT_EQUIVALENT)]
    else:  # the same verdicts from math-verify alone
        got_eq = ["correct" if math_equal(p, g, shortcuts=False) else "wrong_answer" for p, g in EQUIVALENT]
        got_ne = ["correct" if math_equal(p, g, shortcuts=False) else "wrong_answer" for p, g in NOT_EQUIVALENT]
    assert [pair for pair, r in zip(EQUIVALENT, got_eq, strict=True) if r != "correct"] == []
    assert [pair for pair, r in zip(NOT_EQUIVALENT, got_ne, strict=True) if r != "wrong_answer"] == []


PATHOLOGICAL = [
    ("x" * 10_000, "1"),  # a 10,000-character expression
    (r"10^{10^{10^{10}}}", "5"),
    ("5", r"10^{10^{10^{10}}}"),
    ("{" * 3000 + "1" + "}" * 3000, "1"),  # deeply nested braces
    (r"\frac{" * 500 + "1" + "}{2}" * 500, "1"),
    ("9" * 10_000, "9"),
]


def test_pathological_inputs_end_within_the_deadline_and_the_batch_goes_on():
    timeout_s = 1.0
    normal = [("\\frac{1}{2}", "0.5"), ("7", "8"), ("1+" * 5000 + "1", "5001")]
    batch = normal[:1] + PATHOLOGICAL + normal[1:]
    with MathPool(workers=2, timeout_s=timeout_s) as p:
        start = time.monotonic()
        results = p.grade(batch)
        elapsed = time.monotonic() - start
        # the pool is still healthy after its workers were killed
        assert p.grade([("2", "2")]) == [("correct", None)]
    reasons = [r for r, _ in results]
    assert reasons[0] == "correct" and reasons[-2] == "wrong_answer"
    assert reasons[-1] in ("correct", "wrong_answer", "timeout")
    for reason in reasons[1:-2]:
        assert reason in ("timeout", "wrong_answer", "grader_error"), reasons
    assert "timeout" in reasons
    # each item has its own deadline: at most every item times out, two at a time, plus worker restarts
    assert elapsed < timeout_s * len(batch) / 2 + 5


def test_grader_dispatch_on_samples():
    def sample(k, completion, reference="42", domain="math", finish="stop"):
        return Sample(f"t/0/{k}", "t", "0", k, domain, "q", [], reference, completion, {"finish_reason": finish})

    samples = [
        sample(0, "<think>\n6*7</think>\n\nSo \\boxed{42}."),
        sample(1, "<think>\nmaybe \\boxed{42}</think>\n\nThe answer is 41."),
        sample(2, "<think>\nlong thinking \\boxed{42}", finish="length"),
        sample(3, "<think>\nx</think>\n\nI cannot say."),
        sample(4, "<think>\nx</think>\n\nThe answer is (C).", reference="C", domain="science"),
        sample(5, "<think>\nx</think>\n\n\\boxed{B}", reference="C", domain="science"),
        sample(6, "<think>\nx</think>\n\n#### 42", reference="He has 6*7=42.\n#### 42"),
        sample(7, "<think>\nx</think>\n\n42", domain="poetry"),
    ]
    with Grader(math_timeout_s=5, workers=2) as grader:
        grades = grader.grade(samples)
    assert [(g.correct, g.reason) for g in grades] == [
        (True, "correct"),
        (False, "wrong_answer"),
        (False, "truncated"),
        (False, "no_answer"),
        (True, "correct"),
        (False, "wrong_answer"),
        (True, "correct"),
        (False, "unsupported_domain"),
    ]
    assert grades[0].extracted == "42" and grades[1].extracted == "41" and grades[4].extracted == "C"


def test_lenient_think_grades_a_stopped_unclosed_think_block():
    def sample(finish):
        return Sample("t/0/0", "t", "0", 0, "math", "q", [], "50", "<think>\n5 times 10 is 50.\n\nSo the answer is 50.",
                      {"finish_reason": finish})  # fmt: skip

    with Grader(lenient_think=True) as grader:
        assert [g.reason for g in grader.grade([sample("stop"), sample("length")])] == ["correct", "truncated"]
    with Grader() as grader:
        assert grader.grade([sample("stop")])[0].reason == "no_answer"  # R1 practice: no </think>, no answer


NEW_USER = [  # issue 19: what went wrong when tried as a new user would (completion's final answer, gold, correct?)
    ("The roots are $\\boxed{1}$ and $\\boxed{-2}$.", "1,-2", True),
    ("The roots are $\\boxed{1}$ and $\\boxed{-2}$.", "-2", False),
    ("Final Answer: The final answer is 34.", "34", True),
    ("The angle is $\\boxed{90°}$.", "90^\\circ", True),
    ("So $\\boxed{x > 2}$.", "(2,\\infty)", True),
    ("So $\\boxed{(2,\\infty)}$.", "x > 2", True),
    ("So $\\boxed{x > 3}$.", "(2,\\infty)", False),
    ("$\\boxed{4.666667}$", "\\frac{14}{3}", True),
    ("$\\boxed{4.67}$", "\\frac{14}{3}", False),
    ("$\\boxed{-50\\%}$", "-0.5", True),
    ("$\\boxed{1.25\\%}$", "0.0125", True),
    ("$\\boxed{-50\\%}$", "-50", True),
    ("$\\boxed{x = 58,500}$", "58500", True),
    ("The code is AZYUK2A", "2", False),
    ("$\\boxed{1,22}$", "1.22", True),
    ("$\\boxed{1,22}$", "\\{1, 22\\}", True),
    ("We get \\boxed{3}, then check: the final answer is $\\boxed{5}$.", "5", True),
    ("We get \\boxed{3}, then check: the final answer is $\\boxed{5}$.", "3", False),
]


def test_new_user_cases_through_the_grader():
    samples = [
        Sample(f"t/{i}/0", "t", str(i), 0, "math", "q", [], gold, f"<think>\nx\n</think>\n\n{text}", {})
        for i, (text, gold, _) in enumerate(NEW_USER)
    ]
    with Grader(math_timeout_s=10, workers=2) as grader:
        got = [g.correct for g in grader.grade(samples)]
    assert [(t, g) for (t, g, want), ok in zip(NEW_USER, got, strict=True) if ok != want] == []


def test_fast_paths_keep_math_verify_verdicts(shared_dir):
    """Shortcuts, the numeric reject, per-worker caches, chunks and deduplication change speed, not verdicts: the
    same pairs (repeated, as n samples of a problem are) get the verdicts math-verify alone gives them."""
    answers = [r["answer"] for r in _rows(shared_dir, "math500.jsonl")]
    pairs = [(answers[i - 7], answers[i]) for i in range(0, 500, 6)] + EQUIVALENT[:12] + NOT_EQUIVALENT
    with MathPool(workers=2, timeout_s=20) as fast, MathPool(workers=2, timeout_s=20, shortcuts=False) as slow:
        quick = fast.grade(pairs + pairs[::-1])
        plain = slow.grade(pairs)
    assert quick[: len(pairs)] == quick[len(pairs) :][::-1]
    assert [r for r, _ in quick[: len(pairs)]] == [r for r, _ in plain]
