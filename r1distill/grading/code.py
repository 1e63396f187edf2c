"""Code grading: run the last fenced Python block of an answer against the reference's tests, sandboxed.

A code reference is a dict in one of two shapes (a JSON string of one is accepted too):

- I/O tests (LiveCodeBench, Codeforces, APPS)::

      {"tests": [{"input": "1 2\\n", "output": "3\\n", "testtype": "stdin"}, ...]}
      {"tests": [{"input": "[1, 2]\\n3", "output": "[0, 1]", "testtype": "functional"}, ...], "fn_name": "twoSum"}

  (instead of `fn_name`, LiveCodeBench's `starter_code` may be given: the method name is read from it).

  `stdin` tests feed `input` on stdin and compare stdout with `output` token by token (numbers within 1e-6).
  `functional` tests (LiveCodeBench's LeetCode problems) call `Solution().<fn_name>(*args)` (or a top-level
  `<fn_name>`), one JSON value per line of `input` as the arguments, and compare the result with JSON `output`.
- Assertion tests (HumanEval, MBPP)::

      {"test_code": "assert f(1) == 2\\n...", "setup_code": "", "test_imports": ["import math"]}
      {"test_code": "def check(candidate): ...", "entry_point": "f", "prompt": "from typing import List\\ndef f(..."}

  The program is `test_imports + code + setup_code + test_code` (MBPP's setup builds objects from the solution's
  classes; the sanitized MBPP's `test_imports` are what its tests use), followed by `check(<entry_point>)` when an
  entry point is given. With a `prompt` (HumanEval), the code completes the prompt as the official harness runs
  it: `prompt + completion + test + check(entry_point)`, so an answer may rely on the prompt's imports and helpers.
  An answer that is a whole function (it defines the entry point) is appended after the prompt and replaces its
  stub; anything else is the function's body (`humaneval_program`). It passes when it exits 0; an
  `AssertionError` is a wrong answer.

Stdin tests run one sandboxed process each and stop at the first failure; the other shapes run once.
"""

from __future__ import annotations

import ast
import json
import logging
import re
import secrets
import textwrap
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from r1distill.grading.answer import extract_code, final_answer_text
from r1distill.grading.base import Grade
from r1distill.grading.sandbox import DEFAULT_PYTHON, Limits, RunResult, require_level, run_python

log = logging.getLogger(__name__)

# LiveCodeBench's functional problems use these names without importing them (its own harness adds them too).
_FUNCTIONAL_PRELUDE = (
    "from typing import *\nimport collections, heapq, math, itertools, bisect, functools, string, re\n"
    "from collections import *\nfrom heapq import *\nfrom itertools import *\nfrom functools import *\n"
    "from bisect import *\nfrom math import *\n"
)
_FUNCTIONAL_HARNESS = """

def _r1d_same(a, b):
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) <= 1e-6 * max(1.0, abs(float(b)))
        except (TypeError, ValueError):
            return False
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_r1d_same(x, y) for x, y in zip(a, b))
    return a == b


def _r1d_main():
    import json, sys
    fn = FN_NAME
    target = getattr(globals()["Solution"](), fn) if "Solution" in globals() else globals()[fn]
    for i, (raw_in, raw_out) in enumerate(TESTS):
        args = [json.loads(line) for line in raw_in.split("\\n") if line.strip()]
        got = json.loads(json.dumps(target(*args)))
        if not _r1d_same(got, json.loads(raw_out)):
            sys.stderr.write("R1D_WRONG_ANSWER test %d\\n" % i)
            sys.exit(3)


_r1d_main()
"""
_STARTER_FN = re.compile(r"def\s+(\w+)\s*\(\s*self")


def fn_name_from_starter(starter_code: str) -> str | None:
    """The method name in a LiveCodeBench starter (`class Solution: def countSeniors(self, ...)`), else None."""
    m = _STARTER_FN.search(starter_code or "")
    return m.group(1) if m else None


def _defines(code: str, name: str) -> bool:
    """Whether `code` parses on its own and defines `name` at top level (a whole function, not a body)."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return False
    return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name for n in tree.body)


def humaneval_program(prompt: str, code: str, entry_point: str) -> str:
    """The program HumanEval's harness would run before its tests: the prompt completed by the model's code.

    A whole function (one that defines `entry_point`) follows the prompt, whose imports and helpers it may use, and
    replaces the prompt's docstring-only stub; a body (indented, as the harness's completions are, or flush left as
    a code block often shows it) is indented under the prompt's signature."""
    if _defines(code, entry_point):
        return f"{prompt.rstrip()}\n\n\n{code}"
    lines = [line for line in code.splitlines() if line.strip()]
    body = code if lines and lines[0][:1] in (" ", "\t") else textwrap.indent(code, "    ")
    return prompt if not lines else prompt + ("" if prompt.endswith("\n") else "\n") + body


def _tokens_equal(got: str, expected: str) -> bool:
    a, b = got.split(), expected.split()
    if a == b:
        return True
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if x == y:
            continue
        try:
            fx, fy = float(x), float(y)
        except ValueError:
            return False
        if abs(fx - fy) > 1e-6 * max(1.0, abs(fy)):
            return False
    return True


def _finished(run: RunResult, nonce: str) -> bool:
    return run.stdout.rstrip("\n").endswith(nonce)  # the program's own last line may lack its newline


def _failure(run: RunResult, tests_passed: int, n_tests: int) -> Grade:
    details = {"isolation": run.isolation, "tests_passed": tests_passed, "tests": n_tests}
    if run.status == "runtime_error":
        wrong = "AssertionError" in run.stderr or "R1D_WRONG_ANSWER" in run.stderr
        details["stderr_tail"] = run.stderr[-500:]
        return Grade(False, "wrong_answer" if wrong else "runtime_error", None, details)
    if run.status == "ok":  # wrong output, or the program exited before the end of the tests
        return Grade(False, "wrong_answer", None, details)
    return Grade(False, run.status, None, details)


def parse_reference(reference: Any) -> dict[str, Any]:
    """Validate a code reference (see the module docstring); raises ValueError naming the bad field."""
    if isinstance(reference, str):
        try:
            reference = json.loads(reference)
        except ValueError:
            raise ValueError("code reference: a string must be the JSON of a dict (see verifiers.code)") from None
    if not isinstance(reference, dict):
        raise ValueError(f"code reference: expected a dict with 'tests' or 'test_code', got {type(reference).__name__}")
    if "test_cases" in reference and "tests" not in reference:
        reference = _from_verification_info(reference)
    if "test_code" in reference:
        for key in ("test_code", "prompt", "setup_code"):
            if reference.get(key) is not None and not isinstance(reference[key], str):
                raise ValueError(f"code reference: {key!r} must be a string of Python")
        if reference.get("prompt") and not reference.get("entry_point"):
            raise ValueError("code reference: a 'prompt' (HumanEval) needs the 'entry_point' its tests check")
        imports = reference.get("test_imports") or []
        if not isinstance(imports, list) or not all(isinstance(i, str) for i in imports):
            raise ValueError("code reference: 'test_imports' must be a list of import lines")
        return reference
    tests = reference.get("tests")
    if not isinstance(tests, list) or not tests:
        raise ValueError("code reference: 'tests' must be a non-empty list of {input, output, testtype}")
    for i, t in enumerate(tests):
        if not isinstance(t, dict) or "input" not in t or "output" not in t:
            raise ValueError(f"code reference: tests[{i}] needs 'input' and 'output'")
        if t.get("testtype", "stdin") not in ("stdin", "functional"):
            raise ValueError(f"code reference: tests[{i}].testtype must be 'stdin' or 'functional'")
    if any(t.get("testtype") == "functional" for t in tests) and not reference.get("fn_name"):
        name = fn_name_from_starter(reference.get("starter_code") or "")
        if not name:
            raise ValueError("code reference: functional tests need 'fn_name' (or a 'starter_code' naming the method)")
        reference = {**reference, "fn_name": name}
    return reference


def _from_verification_info(info: dict[str, Any]) -> dict[str, Any]:
    """open-r1's `verification_info` ({language, test_cases: [{input, output, type}]}, e.g. in
    open-r1/verifiable-coding-problems-python) as this module's `tests`; stdin/stdout cases only."""
    if str(info.get("language", "python")).lower() not in ("python", "python3"):
        raise ValueError(f"code reference: language {info.get('language')!r}: only Python programs are graded")
    cases = info.get("test_cases")
    if not isinstance(cases, list) or not cases:
        raise ValueError("code reference: 'test_cases' must be a non-empty list of {input, output, type}")
    tests = []
    for i, case in enumerate(cases):
        if not isinstance(case, dict) or case.get("type", "stdin_stdout") != "stdin_stdout":
            raise ValueError(f"code reference: test_cases[{i}]: only type 'stdin_stdout' is supported")
        tests.append({"input": case.get("input", ""), "output": case.get("output", ""), "testtype": "stdin"})
    return {"tests": tests}


def run_tests(
    code: str, reference: Any, limits: Limits | None = None, python: str = DEFAULT_PYTHON, level: str | None = None
) -> Grade:
    """Grade the program `code` (already extracted) against `reference`; `level` forces a sandbox level."""
    limits = limits or Limits()
    try:
        ref = parse_reference(reference)
    except ValueError as e:
        return Grade(False, "invalid_reference", None, {"error": str(e)})
    # A program passes only if it prints this at the very end: exiting 0 early (`sys.exit(0)` before the asserts,
    # a well-known reward hack) is then a failure, not a pass.
    nonce = secrets.token_hex(12)
    finished = f"\nprint({nonce!r}, flush=True)\n"
    if "test_code" in ref:
        if ref.get("prompt"):
            code = humaneval_program(ref["prompt"], code, ref["entry_point"])
        imports = "".join(f"{line}\n" for line in ref.get("test_imports") or [])
        program = f"{imports}{code}\n\n{ref.get('setup_code') or ''}\n{ref['test_code']}\n"
        if ref.get("entry_point"):
            program += f"\ncheck({ref['entry_point']})\n"
        run = run_python(program + finished, "", limits, python, level)
        if run.status == "ok" and _finished(run, nonce):
            return Grade(True, "correct", None, {"isolation": run.isolation})
        return _failure(run, 0, 1)
    tests = ref["tests"]
    functional = [(t["input"], t["output"]) for t in tests if t.get("testtype") == "functional"]
    run: RunResult | None = None
    if functional:
        harness = _FUNCTIONAL_HARNESS.replace("FN_NAME", repr(ref["fn_name"])).replace("TESTS", repr(functional))
        run = run_python(_FUNCTIONAL_PRELUDE + code + "\n" + harness + finished, "", limits, python, level)
        if run.status != "ok" or not _finished(run, nonce):
            return _failure(run, 0, len(tests))
    passed = len(functional)
    for t in tests:
        if t.get("testtype", "stdin") != "stdin":
            continue
        run = run_python(code, str(t["input"]), limits, python, level)
        if run.status != "ok" or not _tokens_equal(run.stdout, str(t["output"])):
            return _failure(run, passed, len(tests))
        passed += 1
    isolation = run.isolation if run else None
    return Grade(True, "correct", None, {"isolation": isolation, "tests_passed": passed, "tests": len(tests)})


def grade_code(
    answer_text: str,
    reference: Any,
    limits: Limits | None = None,
    python: str = DEFAULT_PYTHON,
    level: str | None = None,
) -> Grade:
    """Grade a final answer (the text after `</think>`): extract its last Python block, then `run_tests`."""
    code = extract_code(answer_text)
    if code is None:
        return Grade(False, "no_answer")
    return run_tests(code.value, reference, limits, python, level)


def grade_code_many(
    items: Sequence[tuple[str, Any]],
    limits: Limits | None = None,
    workers: int = 2,
    python: str = DEFAULT_PYTHON,
    level: str | None = None,
) -> list[Grade]:
    """`grade_code` over (answer_text, reference) pairs, `workers` sandboxes at a time (threads wait on processes).

    The sandbox level is settled first: `SandboxRefused` (bubblewrap unusable, no weaker level named) stops the
    batch instead of costing each sample a `grader_error`."""
    level = require_level(level, python)

    def one(item: tuple[str, Any]) -> Grade:
        try:
            return grade_code(item[0], item[1], limits, python, level)
        except Exception as e:  # a grader bug or a full disk must cost one sample, not the batch
            log.exception("code grading failed")
            return Grade(False, "grader_error", None, {"error": f"{type(e).__name__}: {e}"[:300]})

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        return list(pool.map(one, items))


def grade_completion(completion: str, reference: Any, limits: Limits | None = None) -> Grade:
    """`grade_code` on a raw completion (splits off the `<think>` block first)."""
    return grade_code(final_answer_text(completion), reference, limits)
