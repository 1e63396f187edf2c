"""evaluate's scoring: grade a benchmark's samples, turn the verdicts into its metrics, and compare models pairwise.

`score_benchmark` grades what a model's samples folder holds into scored.jsonl and returns `bench_metrics` of it plus
the per-problem outcomes; `paired` compares the evaluated model with each baseline on the problems both were scored
on (`metrics.paired_delta`). The functions here know the record shapes, not the stage's folders or engines.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

from r1distill.core.store import iter_records, write_jsonl_atomic
from r1distill.evaluate import metrics
from r1distill.grading.grader import MATH_DOMAINS, Grader
from r1distill.grading.judge import JudgeConfig, judge_undecided
from r1distill.grading.math import CORRECT, MathPool, math_equal

CI_METHOD = "mean of per-problem pass rates, Student-t 95% interval over problems (df = problems - 1)"


def score(
    records: list[dict[str, Any]], grader: Grader, judge: JudgeConfig | None = None, cache_dir: Path | None = None
) -> list[dict[str, Any]]:
    """Each sample record with a `grade` entry (correct, reason, extracted, ...) added; with `judge` on, the answers
    the rules cannot decide carry the judge's verdict instead (`verdict_by: judge`, cached in `cache_dir`)."""
    grades = judge_undecided(judge, records, grader.grade(records), cache_dir) if judge else grader.grade(records)
    return [{**rec, "grade": g.to_meta()} for rec, g in zip(records, grades, strict=True)]


def _equal(a: str, b: str) -> bool:
    """In-process math equivalence (no deadline): for tests and small inputs; runs use `pool_equivalence`."""
    try:
        return math_equal(a, b)
    except Exception:  # math-verify may raise on odd input; unequal is the safe answer for a vote
        return a == b


def pool_equivalence(pool: MathPool, groups: Iterable[Sequence[str | None]]) -> Callable[[str, str], bool]:
    """An `equal` for cons@k: each pair of distinct answers within a problem is compared once in the math pool,
    under its hard deadline (a model's answers can make math-verify hang); a timeout counts as unequal."""
    pairs: set[tuple[str, str]] = set()
    for answers in groups:
        pairs.update(combinations(sorted({a for a in answers if a}), 2))
    jobs = sorted(pairs)
    known: dict[tuple[str, str], bool] = {}
    for (a, b), (reason, _) in zip(jobs, pool.grade(jobs), strict=True):
        known[(a, b)] = known[(b, a)] = reason == CORRECT
    return lambda a, b: a == b or known.get((a, b), False)


def bench_metrics(
    scored: list[dict[str, Any]], domain: str, n: int, ks: list[int], equal: Callable[[str, str], bool] | None = None
) -> dict[str, Any]:
    """Metrics of one benchmark from its scored samples (see `r1distill.evaluate.metrics` for the definitions).

    `equal` groups extracted answers for cons@n (default: in-process math equivalence)."""
    by_problem: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in scored:
        by_problem[rec["row"]].append(rec)
    for recs in by_problem.values():
        recs.sort(key=lambda r: r["k"])
    per_problem = [metrics.rate([r["grade"]["correct"] for r in recs]) for recs in by_problem.values()]
    mean, low, high = metrics.t_ci(per_problem)
    out: dict[str, Any] = {
        "problems": len(by_problem),
        "samples": len(scored),
        "n": n,
        "pass@1": mean,
        "pass@1_ci95": [low, high],
        "ci_method": CI_METHOD,
    }
    if n == 1:  # one sample per problem: a plain binomial, where Wilson's interval behaves better near 0 and 1
        out["pass@1_wilson95"] = list(metrics.wilson(sum(r["grade"]["correct"] for r in scored), len(scored)))
    for k in sorted(set(ks)):
        if 1 < k <= n:
            vals = [
                metrics.pass_at_k(len(recs), sum(r["grade"]["correct"] for r in recs), k)
                for recs in by_problem.values()
            ]
            out[f"pass@{k}"] = sum(vals) / len(vals)
    if domain in MATH_DOMAINS and n > 1:
        vote_equal = equal or _equal
        votes = [
            metrics.cons_at_k(
                [r["grade"].get("extracted") for r in recs],
                [r["grade"]["correct"] for r in recs],
                equal=vote_equal,
            )
            for recs in by_problem.values()
        ]
        out[f"cons@{n}"] = sum(votes) / len(votes)
    judged = [r for r in scored if r["grade"].get("verdict_by") == "judge"]
    out["judged"] = len(judged)  # LLM-judge verdicts, counted apart: pass@1_rules is what the rules alone give
    if judged:
        out["judged_correct"] = sum(r["grade"]["correct"] for r in judged)
        rules = [
            metrics.rate([r["grade"]["correct"] and r["grade"].get("verdict_by") != "judge" for r in recs])
            for recs in by_problem.values()
        ]
        out["pass@1_rules"] = sum(rules) / len(rules)
    reasons = Counter(r["grade"]["reason"] for r in scored)
    out["truncation_rate"] = metrics.rate([r["meta"].get("finish_reason") == "length" for r in scored])
    out["no_answer_rate"] = metrics.rate([r["grade"]["reason"] == "no_answer" for r in scored])
    tokens = [r["meta"].get("completion_tokens", 0) for r in scored]
    out["mean_completion_tokens"] = sum(tokens) / max(len(tokens), 1)
    out["reasons"] = dict(sorted(reasons.items()))
    return out


def score_benchmark(
    samples_dir: Path,
    scored_path: Path,
    domain: str,
    wanted: set[str],
    n: int,
    ks: list[int],
    grader: Grader,
    judge: JudgeConfig | None = None,
) -> tuple[dict[str, Any], dict[str, float], bool]:
    """Grade the wanted samples (rows in `wanted`, k < n) into `scored_path`; returns (metrics, {problem: pass
    rate}, whether every sample was drawn with its seed). A folder reused with a smaller limit or n keeps its
    other samples, unscored. The judge's cache lives beside `scored_path`."""
    records = sorted(
        (r for r in iter_records(samples_dir) if r["row"] in wanted and r["k"] < n),
        key=lambda r: (r["row"], r["k"]),
    )
    scored = score(records, grader, judge, scored_path.parent)
    equal = None
    if domain in MATH_DOMAINS and n > 1:
        by_row: dict[str, list[str | None]] = defaultdict(list)
        for rec in scored:
            by_row[rec["row"]].append(rec["grade"].get("extracted"))
        equal = pool_equivalence(grader.math, by_row.values())
    write_jsonl_atomic(scored_path, scored)
    seeded = all((r["meta"].get("sampling") or {}).get("seed") is not None for r in scored)
    return bench_metrics(scored, domain, n, ks, equal), metrics.outcomes_by_problem(scored), seeded


def paired(
    main: str, outcomes: dict[str, dict[str, dict[str, float]]], method: str = "bootstrap", seed: int = 0
) -> dict[str, dict[str, Any]]:
    """{baseline label: {benchmark: Δ pass@1 of `main` minus it, with a paired CI and p-value}} for every other
    model in `outcomes` ({label: {benchmark: {problem: pass rate}}}) on the benchmarks both were scored on."""
    ours = outcomes[main]
    out: dict[str, dict[str, Any]] = {}
    for label, theirs in outcomes.items():
        if label == main:
            continue
        out[label] = {
            bench: metrics.paired_delta(ours[bench], theirs[bench], method=method, seed=seed)
            for bench in ours
            if bench in theirs
        }
    return out
