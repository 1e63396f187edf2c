"""Build `Sample`s from literal strings, for check tests (yours and ours): `sample("reasoning", "answer")`."""

from __future__ import annotations

from typing import Any

from r1distill.core.records import Sample


def sample(
    reasoning: str = "Let me add the numbers. Two plus two is four.",
    answer: str = "The answer is $\\boxed{4}$.",
    *,
    problem: str = "What is two plus two?",
    domain: str = "math",
    completion: str | None = None,
    meta: dict[str, Any] | None = None,
    id: str = "test/0/0",
) -> Sample:
    """A sample whose completion is `<think>\\nreasoning\\n</think>\\n\\nanswer` (or `completion` verbatim)."""
    source, row, k = (id.split("/") + ["0", "0"])[:3]
    return Sample(
        id=id,
        source=source,
        row=row,
        k=int(k),
        domain=domain,
        problem=problem,
        messages=[{"role": "user", "content": problem}],
        reference=None,
        completion=completion if completion is not None else f"<think>\n{reasoning}\n</think>\n\n{answer}",
        meta={"finish_reason": "stop", **(meta or {})},
    )
