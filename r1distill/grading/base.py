"""The result every grader returns, so verify, rl and evaluate read verdicts the same way."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Grade:
    """Whether a completion is correct and why.

    `reason` is a short snake_case word counted in manifests: `correct`, `wrong_answer`, `no_answer`, `truncated`,
    `timeout`, `unparseable` (an answer nested too deep or too long to grade), `runtime_error`, `output_limit`,
    `invalid_reference`, `unsupported_domain`, `grader_error`, ...
    `extracted` is the answer the grader compared (for code: None, the program is too long to repeat).
    """

    correct: bool
    reason: str
    extracted: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def reward(self) -> float:
        return 1.0 if self.correct else 0.0

    def to_meta(self) -> dict[str, Any]:
        """The `sample.meta["verify"]` entry."""
        return {"correct": self.correct, "reason": self.reason, "extracted": self.extracted, **self.details}
