"""Rejection sampling: keep only samples the verify stage graded correct (`meta["verify"]["correct"]`)."""

from __future__ import annotations

from r1distill.core.records import Sample, Verdict
from r1distill.filter.checks import register


def correct(sample: Sample, *, keep_unverified: bool = False) -> Verdict:
    """`incorrect` when verify said so; `unverified` when it left no verdict (kept if `keep_unverified`)."""
    verdict = sample.meta.get("verify")
    if not isinstance(verdict, dict) or verdict.get("correct") is None:
        return Verdict.ok(unverified=True) if keep_unverified else Verdict.drop("unverified")
    if verdict["correct"]:
        return Verdict.ok()
    return Verdict.drop("incorrect", verify_reason=verdict.get("reason"))


register("correct", correct)
