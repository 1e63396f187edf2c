"""Code grading for real: HumanEval and MBPP canonical solutions pass, broken variants fail, LiveCodeBench tests run.

HumanEval is the copy bundled with r1distill (openai/human-eval's file); MBPP and LiveCodeBench come from
../shared/benchmarks.
"""

from __future__ import annotations

import gzip
import json
import re

import pytest

from r1distill.evaluate.benchmarks import HUMANEVAL_FILE
from r1distill.grading.code import (
    fn_name_from_starter,
    grade_code,
    grade_code_many,
    humaneval_program,
    parse_reference,
    run_tests,
)
from r1distill.grading.sandbox import Limits, isolation_level

LIMITS = Limits(timeout_s=10, memory_mb=512)
# Wraps the tested function so that every result is off (number + 1, text + "x", flipped bool, ...): a broken variant.
BREAK = """

def _r1d_break(fn):
    def wrong(*args, **kwargs):
        r = fn(*args, **kwargs)
        if isinstance(r, bool):
            return not r
        if isinstance(r, (int, float)):
            return r + 1
        if isinstance(r, (str, list, tuple)):
            return r + type(r)("x" if isinstance(r, str) else [None])
        return "broken"
    return wrong


{name} = _r1d_break({name})
"""


def _answer(code: str) -> str:
    return f"Here is my solution.\n\n```python\n{code}\n```\n"


def _human_eval() -> list[dict]:
    with gzip.open(HUMANEVAL_FILE, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def _entry_function(p: dict) -> str:
    """The prompt's entry-point function alone (signature + docstring), without the imports and helpers above it."""
    return p["prompt"][re.search(rf"^def {p['entry_point']}\(", p["prompt"], re.M).start() :]


def _mbpp(shared_dir) -> list[dict]:
    path = shared_dir / "benchmarks" / "mbpp.jsonl"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    rows = [json.loads(line) for line in path.open(encoding="utf-8")]
    return [r for r in rows if 11 <= r["task_id"] <= 510]


def test_humaneval_graded_like_the_harness_full_functions_and_bodies_pass_broken_ones_fail():
    """As openai/human-eval runs it (prompt + completion + test + check): the canonical solutions pass both as (a) the
    whole entry function, without the prompt's imports and helpers, and (b) the bare body completing the prompt."""
    problems = _human_eval()
    refs = [{"test_code": p["test"], "entry_point": p["entry_point"], "prompt": p["prompt"]} for p in problems]
    full = [_answer(_entry_function(p) + p["canonical_solution"]) for p in problems]
    body = [p["canonical_solution"] for p in problems]  # as a harness completion: indented, no fence needed
    bad = [
        _answer(_entry_function(p) + p["canonical_solution"] + BREAK.format(name=p["entry_point"])) for p in problems
    ]
    body_answers = [f"```python\n{b}```" for b in body]
    grades = grade_code_many(list(zip(full + body_answers + bad, refs * 3, strict=True)), LIMITS, workers=8)
    n = len(problems)
    assert n == 164
    for part, name in ((grades[:n], "full"), (grades[n : 2 * n], "body")):
        assert [(p["task_id"], g.reason) for p, g in zip(problems, part, strict=True) if not g.correct] == [], name
    assert [p["task_id"] for p, g in zip(problems, grades[2 * n :], strict=True) if g.correct] == []
    assert {g.details["isolation"] for g in grades} == {isolation_level()}
    assert {g.reason for g in grades[2 * n :]} <= {"wrong_answer", "runtime_error"}


def test_humaneval_program_completes_the_prompt():
    prompt = (
        'from typing import List\n\n\ndef helper(x):\n    return x\n\n\ndef f(xs: List[int]) -> int:\n    """Sum."""\n'
    )
    body = "    return sum(helper(x) for x in xs)\n"
    assert humaneval_program(prompt, body, "f") == prompt + body
    flush_left = "return sum(helper(x) for x in xs)\n"  # a body shown flush left in its code block
    assert humaneval_program(prompt, flush_left, "f") == prompt + body
    whole = "def f(xs: List[int]) -> int:\n    return sum(helper(x) for x in xs)\n"
    program = humaneval_program(prompt, whole, "f")
    assert program.startswith(prompt.rstrip()) and program.endswith(whole)  # after the prompt: its def wins
    ref = {"test_code": "def check(c):\n    assert c([1, 2]) == 3\n", "entry_point": "f", "prompt": prompt}
    assert [run_tests(c, ref, LIMITS).correct for c in (body, flush_left, whole)] == [True, True, True]
    without_prompt = {k: v for k, v in ref.items() if k != "prompt"}  # the old grading: the code block alone
    assert run_tests(whole, without_prompt, LIMITS).reason == "runtime_error"  # NameError: List, helper
    with pytest.raises(ValueError, match="entry_point"):
        parse_reference({"test_code": "", "prompt": prompt})


def test_mbpp_canonical_solutions_pass_and_broken_ones_fail(shared_dir):
    """The shared copy's reference code, graded through the benchmark's own rows (test_setup_code included)."""
    from r1distill.evaluate.benchmarks import get

    rows = _mbpp(shared_dir)
    bench = {r["id"]: r["answer"] for r in get("mbpp").rows(shared_dir / "benchmarks")}
    refs = [bench[str(r["task_id"])] for r in rows]
    assert sum(bool(ref["setup_code"]) for ref in refs) > 0  # some problems need their setup to pass
    names = [re.search(r"assert\s+(?:not\s+)?\(?\s*(?:set\()?\s*(\w+)\s*\(", r["test_list"][0]).group(1) for r in rows]
    good = [_answer(r["code"]) for r in rows]
    bad = [_answer(r["code"] + BREAK.format(name=name)) for r, name in zip(rows, names, strict=True)]
    grades = grade_code_many(list(zip(good + bad, refs + refs, strict=True)), LIMITS, workers=8)
    n = len(rows)
    assert n == 500
    assert [(r["task_id"], g.reason) for r, g in zip(rows, grades[:n], strict=True) if not g.correct] == []
    assert [r["task_id"] for r, g in zip(rows, grades[n:], strict=True) if g.correct] == []


SOLUTIONS = {  # handwritten solutions for a few public LiveCodeBench problems (id -> program)
    0: "for _ in range(int(input())):\n    s = input().strip()\n"
    "    print('YES' if sum(a != b for a, b in zip(s, 'abc')) in (0, 2) else 'NO')\n",
    5: "for _ in range(int(input())):\n    print('First' if int(input()) % 3 else 'Second')\n",
    9: "class Solution:\n    def countSeniors(self, details: List[str]) -> int:\n"
    "        return sum(int(d[11:13]) > 60 for d in details)\n",
}


def _lcb(shared_dir) -> dict[int, dict]:
    path = shared_dir / "benchmarks" / "livecodebench_public.jsonl"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    rows = [json.loads(line) for line in path.open(encoding="utf-8")]
    return {r["id"]: r for r in rows if r["id"] in SOLUTIONS}


@pytest.mark.parametrize("problem_id", sorted(SOLUTIONS))
def test_livecodebench_stdin_and_functional(shared_dir, problem_id):
    row = _lcb(shared_dir)[problem_id]
    ref = {"tests": row["public_test_cases"], "starter_code": row["starter_code"]}  # fn_name read from the starter
    if row["public_test_cases"][0]["testtype"] == "functional":
        assert fn_name_from_starter(row["starter_code"]) == "countSeniors"
    grade = grade_code(_answer(SOLUTIONS[problem_id]), ref, LIMITS)
    assert grade.correct, grade
    assert grade.details["tests_passed"] == len(row["public_test_cases"])
    wrong = SOLUTIONS[problem_id].replace("'YES'", "'NO'").replace("% 3", "% 2").replace("> 60", "< 60")
    assert grade_code(_answer(wrong), ref, LIMITS).reason == "wrong_answer"


def test_stdin_comparison_is_token_based_with_float_tolerance():
    ref = {"tests": [{"input": "", "output": "1 2\n3.0000001\n", "testtype": "stdin"}]}
    assert run_tests("print(1, 2, end='  \\n')\nprint(3.0)", ref).correct
    assert not run_tests("print(1, 2)\nprint(3.1)", ref).correct
    assert not run_tests("print(1, 2, 4)", ref).correct


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("I would write a loop.", "no_answer"),
        (_answer("raise SystemExit(input())"), "runtime_error"),
        (_answer("while True: pass"), "timeout"),
        (_answer("print(1/0)"), "runtime_error"),
    ],
)
def test_failure_reasons(answer, reason):
    ref = {"tests": [{"input": "1\n", "output": "1\n", "testtype": "stdin"}]}
    grade = grade_code(answer, ref, Limits(timeout_s=1))
    assert (grade.correct, grade.reason) == (False, reason)


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ({"tests": []}, "non-empty list"),
        ({"tests": [{"input": "1"}]}, r"tests\[0\] needs 'input' and 'output'"),
        ({"tests": [{"input": "1", "output": "1", "testtype": "functional"}]}, "fn_name"),
        ("not json", "JSON"),
        (["a list"], "expected a dict"),
    ],
)
def test_bad_references_name_the_field(reference, message):
    with pytest.raises(ValueError, match=message):
        parse_reference(reference)
    assert grade_code(_answer("print(1)"), reference).reason == "invalid_reference"


@pytest.mark.parametrize(
    ("code", "reference"),
    [
        ("import sys\nsys.exit(0)\ndef f(x): return 0", {"test_code": "assert f(1) == 2"}),
        ("import os\nos._exit(0)", {"test_code": "def check(c):\n    assert c(1) == 2", "entry_point": "f"}),
        (
            "import sys\nclass Solution:\n    def f(self, x):\n        sys.exit(0)",
            {"tests": [{"input": "1", "output": "2", "testtype": "functional"}], "fn_name": "f"},
        ),
    ],
)
def test_exiting_before_the_tests_is_not_a_pass(code, reference):
    """`sys.exit(0)` ahead of the asserts is a known reward hack: the run must reach the end of the tests."""
    grade = run_tests(code, reference, LIMITS)
    assert (grade.correct, grade.reason) == (False, "wrong_answer")
    honest = (
        "import sys\nsys.stdout.write('no newline')\ndef f(x): return x + 1\nclass Solution:\n    f = staticmethod(f)"
    )
    assert run_tests(honest, reference, LIMITS).correct


def test_open_r1_verification_info_is_graded_like_tests():
    """open-r1/verifiable-coding-problems-python stores tests as {language, test_cases: [{input, output, type}]}."""
    cases = [{"input": "2 3\n", "output": "5\n", "type": "stdin_stdout"},
             {"input": "10 -4\n", "output": "6\n", "type": "stdin_stdout"}]  # fmt: skip
    info = {"language": "python", "test_cases": cases}
    good, bad = "a, b = map(int, input().split())\nprint(a + b)", "a, b = map(int, input().split())\nprint(a * b)"
    assert run_tests(good, json.dumps(info)).correct
    assert not run_tests(bad, info).correct
    with pytest.raises(ValueError, match="only Python"):
        parse_reference({**info, "language": "cpp"})
    with pytest.raises(ValueError, match=r"test_cases\[0\]: only type 'stdin_stdout'"):
        parse_reference({"test_cases": [{"input": "[1]", "output": "1", "type": "function_call"}]})
