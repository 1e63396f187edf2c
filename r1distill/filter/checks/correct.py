"""Rejection sampling: keep only samples the verify stage graded correct (`meta["verify"]["correct"]`)."""

from __future__ import annotations

from r1distill.core.records import Sample, Verdict
from r1distill.filter.checks import evidence, register


def correct(sample: Sample, *, keep_unverified: bool = False) -> Verdict:
    """`incorrect` when verify said so; `unverified` when it left no verdict (kept if `keep_unverified`)."""
    verdict = sample.meta.get("verify")
    answer = sample.answer  # the evidence: the answer's end, where the final answer is stated
    if not isinstance(verdict, dict) or verdict.get("correct") is None:
        if keep_unverified:
            return Verdict.ok(unverified=True)
        drop = Verdict.drop("unverified")
        drop.evidence = evidence("answer", answer, len(answer) - 300, None, "meta.verify.correct is set")
        return drop
    if verdict["correct"]:
        return Verdict.ok()
    drop = Verdict.drop("incorrect", verify_reason=verdict.get("reason"))
    shown = {k: verdict[k] for k in ("extracted", "predicted", "reference", "reason") if k in verdict}
    drop.evidence = evidence("answer", answer, len(answer) - 300, None, "meta.verify.correct is true", verify=shown)
    return drop


register("correct", correct)
