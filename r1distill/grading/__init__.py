"""Graders shared by verify (rejection sampling), rl (rewards) and evaluate (pass@1): one implementation each.

- `answer`: the linear, in-process part of reading answers (final answer after `</think>`, boxes, screening of
  answers no parser should see, choices, code blocks).
- `math`: reading and comparing math answers with math-verify; `pool.MathPool` runs it in worker processes with a
  hard per-item deadline.
- `sandbox` + `code`: model-written programs run contained against stdin/stdout or assertion tests.
- `grader.Grader`: dispatch by the sample's domain; returns `base.Grade` objects. rl's accuracy reward
  (`r1distill.train.rewards`) and evaluate call `Grader.grade` (or `grade_samples`) on their samples.
"""

from r1distill.grading.base import Grade
from r1distill.grading.grader import Grader, grade_samples

__all__ = ["Grade", "Grader", "grade_samples"]
