"""One entry point for grading samples of any domain: verify keeps by it, rl rewards by it, evaluate scores by it.

`Grader.grade(samples)` takes `Sample`s (or their dicts) and returns one `Grade` each:

- the final answer is the text after `</think>`; a completion cut inside its `<think>` block is `truncated`
  (finish_reason "length") or `no_answer`, unless `lenient_think` grades a completion that *stopped* without
  closing `<think>` on its whole text (for small teachers that never learnt the tag, e.g. the quickstart's);
- `math`: the final answer is screened in-process (`answer.screen`, `answer.boxes`: linear, so no text can stall
  the caller), then read and compared by math-verify in a `MathPool` (hard per-item deadline); an answer nested
  too deep or too long is `unparseable`;
- `science`: a multiple-choice letter when the reference is one (GPQA-style), else graded like math;
- `code`: the last Python block run against the tests in the sandbox (see `verifiers.code`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from typing import Any

from r1distill.core.records import Sample, parse_completion
from r1distill.grading.answer import boxes, extract_choice, reference_answer, screen
from r1distill.grading.base import Grade
from r1distill.grading.code import grade_code_many
from r1distill.grading.math import UNPARSEABLE
from r1distill.grading.pool import MathPool
from r1distill.grading.sandbox import DEFAULT_PYTHON, Limits

log = logging.getLogger(__name__)

_LETTER = re.compile(r"^\(?([A-J])\)?\.?$")
_FINAL_PHRASE = re.compile(r"final answer", re.IGNORECASE)
MATH_DOMAINS = ("math", "science")


def _as_sample(sample: Sample | dict[str, Any]) -> Sample:
    return sample if isinstance(sample, Sample) else Sample.from_dict(sample)


class Grader:
    """Grades batches of samples; holds the math worker pool, so use it as a context manager (or call close)."""

    def __init__(
        self,
        math_timeout_s: float = 5.0,
        math_memory_mb: int | None = 4096,
        code_limits: Limits | None = None,
        workers: int = 2,
        python: str = DEFAULT_PYTHON,
        isolation: str | None = None,
        lenient_think: bool = False,
        code_concurrency: int | None = None,
    ):
        self.math = MathPool(workers=workers, timeout_s=math_timeout_s, memory_mb=math_memory_mb)
        self.code_limits = code_limits or Limits()
        self.workers = workers
        self.python = python
        self.isolation = isolation  # None: the strongest sandbox level available
        self.lenient_think = lenient_think
        # Sandboxed runs wait more on the kernel (namespaces) than they compute, and are judged by CPU time, so more
        # of them than cores run at once: about 4 per core is where throughput stops growing on 2 cores.
        self.code_concurrency = code_concurrency or 4 * workers

    def __enter__(self) -> Grader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.math.close()

    def grade(self, samples: Sequence[Sample | dict[str, Any]]) -> list[Grade]:
        """One `Grade` per sample, in order."""
        items = [_as_sample(s) for s in samples]
        grades: list[Grade | None] = [None] * len(items)
        math_jobs: list[tuple[int, tuple[str, ...], str, str]] = []
        code_jobs: list[tuple[int, str, Any]] = []
        for i, s in enumerate(items):
            parsed = parse_completion(s.completion)
            answer = parsed.answer
            if parsed.has_think and not parsed.closed:
                if s.finish_reason == "length":
                    grades[i] = Grade(False, "truncated")
                    continue
                if not self.lenient_think:
                    grades[i] = Grade(False, "no_answer")
                    continue
                answer = parsed.reasoning
            if s.domain == "code":
                code_jobs.append((i, answer, s.reference))
            elif s.domain in MATH_DOMAINS:
                grades[i] = self._prepare_math(i, answer, s.reference, math_jobs)
            else:
                grades[i] = Grade(False, "unsupported_domain", None, {"domain": s.domain})
        if math_jobs:
            verdicts = self.math.grade_final([job[1:] for job in math_jobs])
            for (i, *_), (reason, detail, extracted) in zip(math_jobs, verdicts, strict=True):
                grades[i] = Grade(reason == "correct", reason, extracted, {"detail": detail} if detail else {})
        if code_jobs:
            results = grade_code_many(
                [(a, r) for _, a, r in code_jobs], self.code_limits, self.workers, self.python, self.isolation
            )
            for (i, _, _), grade in zip(code_jobs, results, strict=True):
                grades[i] = grade
        return [g if g is not None else Grade(False, "grader_error") for g in grades]

    @staticmethod
    def _prepare_math(
        i: int, answer: str, reference: Any, jobs: list[tuple[int, tuple[str, ...], str, str]]
    ) -> Grade | None:
        """A final Grade when no math-verify call is needed, else None after queueing the job."""
        if reference is None or not str(reference).strip():
            return Grade(False, "invalid_reference", None, {"error": "empty reference"})
        gold = reference_answer(reference)
        letter = _LETTER.match(gold.strip())
        if letter:  # multiple choice: compare letters, never numbers
            choice = extract_choice(answer)
            if choice is not None:
                ok = choice.value == letter.group(1)
                return Grade(ok, "correct" if ok else "wrong_answer", choice.value)
            # no choice pattern (`\\mathrm{E}`, `\\textbf{A}`): math-verify compares the letter as a symbol
        text, refused = screen(answer)
        if refused:
            return Grade(False, UNPARSEABLE, None, {"detail": refused})
        if not text.strip():
            return Grade(False, "no_answer")
        found = boxes(text)
        # One box and nothing after it claiming otherwise: the box alone is the answer, so samples boxing the same
        # answer are one job, graded once. Else math-verify reads the text (see `math.grade_final`).
        last = text.rfind("\\boxed")
        alone = len(set(found)) == 1 and not _FINAL_PHRASE.search(text, max(last, 0))
        jobs.append((i, tuple(found), "" if alone else text, gold))
        return None


def grade_samples(samples: Sequence[Sample | dict[str, Any]], **grader_kwargs: Any) -> list[Grade]:
    """Grade once with a throwaway `Grader` (convenient for evaluation scripts; reuse a Grader in loops)."""
    with Grader(**grader_kwargs) as grader:
        return grader.grade(samples)
