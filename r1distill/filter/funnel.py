"""The filter's funnel: counts per reason (in pipeline order) and domain, example ids and evidence, lengths; the
manifest's report section and `report.md` come from it."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from r1distill.filter.judge import Judged
from r1distill.filter.report import length_summary, write_report

EVIDENCE_EXAMPLES = 3  # drops per reason whose evidence the manifest and the reports show


class Funnel:
    """Counters for the funnel, per reason and domain, example ids and length distributions."""

    def __init__(self, examples: int):
        self.examples = examples
        self.n_in = self.n_kept = 0
        self.by_reason: Counter[str] = Counter()
        self.check_of: dict[str, str] = {}
        self.by_domain: dict[str, Counter[str]] = defaultdict(Counter)
        self.example_ids: dict[str, list[str]] = defaultdict(list)
        self.example_evidence: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.len_in: list[int] = []
        self.len_kept: list[int] = []
        self.tok_in: list[int] = []
        self.tok_kept: list[int] = []

    def seen(self, res: Judged) -> None:
        self.n_in += 1
        self.by_domain[res.domain]["in"] += 1
        self.len_in.append(res.chars)
        if res.tokens is not None:
            self.tok_in.append(res.tokens)

    def dropped(self, res: Judged, reason: str, check: str) -> None:
        self.by_reason[reason] += 1
        self.check_of[reason] = check
        self.by_domain[res.domain][reason] += 1
        if len(self.example_ids[reason]) < self.examples:
            self.example_ids[reason].append(res.id)
        if len(self.example_evidence[reason]) < EVIDENCE_EXAMPLES and res.evidence:
            self.example_evidence[reason].append({"id": res.id, **res.evidence})

    def kept(self, res: Judged) -> None:
        self.n_kept += 1
        self.by_domain[res.domain]["kept"] += 1
        self.len_kept.append(res.chars)
        if res.tokens is not None:
            self.tok_kept.append(res.tokens)

    def report(self, policy: str, check_names: list[str], out_dir: Path) -> dict[str, Any]:
        """The manifest's report section; also renders `report.md` and its charts into the output folder."""
        order = _funnel_order(check_names, self.by_reason, self.check_of)
        funnel, remaining = [{"step": "in", "count": self.n_in, "remaining": self.n_in}], self.n_in
        for reason in order:
            remaining -= self.by_reason[reason]
            funnel.append({"step": reason, "check": self.check_of[reason], "dropped": self.by_reason[reason],
                           "remaining": remaining})  # fmt: skip
        funnel.append({"step": "kept", "count": self.n_kept, "remaining": self.n_kept})
        report = {
            "funnel": funnel,
            "reasons": {r: self.by_reason[r] for r in order},
            "domains": {d: dict(c) for d, c in sorted(self.by_domain.items())},
            "examples": {r: self.example_ids[r] for r in order},
            "evidence": {r: self.example_evidence[r] for r in order if self.example_evidence[r]},
            "lengths": {
                "completion_chars": {"in": length_summary(self.len_in), "kept": length_summary(self.len_kept)},
                "completion_tokens": {"in": length_summary(self.tok_in), "kept": length_summary(self.tok_kept)},
            },
            "report": "report.md",
        }
        write_report(out_dir, policy, report, self.len_in, self.len_kept)
        return report


def _funnel_order(check_names: list[str], by_reason: Counter[str], check_of: dict[str, str]) -> list[str]:
    """Reasons in pipeline order: decontam, the policy's checks in policy order, then dedup."""
    rank = {name: i for i, name in enumerate(["decontam", *check_names, "dedup_problem", "dedup_completion"])}
    return sorted(by_reason, key=lambda r: (rank.get(check_of[r], len(rank)), -by_reason[r], r))
