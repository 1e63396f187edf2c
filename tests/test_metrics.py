"""Metrics against closed-form values: pass@k, cons@k voting (math-equivalent answers together), intervals."""

from __future__ import annotations

from math import comb

import pytest

from r1distill.evaluate import metrics
from r1distill.evaluate.scoring import _equal, bench_metrics


@pytest.mark.parametrize(
    ("n", "c", "k"), [(5, 2, 1), (5, 2, 2), (5, 2, 5), (10, 3, 4), (64, 0, 8), (64, 64, 8), (64, 17, 16)]
)
def test_pass_at_k_matches_closed_form(n, c, k):
    expected = 1 - comb(n - c, k) / comb(n, k)
    assert metrics.pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_edges():
    assert metrics.pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert metrics.pass_at_k(5, 2, 5) == 1.0  # k = n: any correct sample is drawn
    assert metrics.pass_at_k(5, 0, 3) == 0.0
    assert metrics.pass_at_k(5, 5, 1) == 1.0
    assert metrics.pass_at_k(1000, 1, 1) == pytest.approx(0.001)  # no overflow for large n
    with pytest.raises(ValueError):
        metrics.pass_at_k(5, 2, 6)


def test_cons_at_k_groups_equivalent_answers():
    # "1/2" and "0.5" and "\frac{1}{2}" are one answer with three votes; "3" has two.
    answers = ["3", "1/2", "0.5", "3", "\\frac{1}{2}"]
    correct = [False, True, True, False, True]
    assert metrics.cons_at_k(answers, correct, equal=_equal) == 1.0
    assert metrics.cons_at_k(answers, correct) == 0.0  # string equality: "3" wins with 2 votes
    assert metrics.cons_at_k(answers, correct, k=1, equal=_equal) == 0.0


def test_cons_at_k_ties_and_no_answers():
    assert metrics.majority(["4", "5", "5", "4"]) == 0  # tie: the group seen first
    assert metrics.majority([None, "5", None]) == 1
    assert metrics.cons_at_k([None, None], [False, False]) == 0.0


def test_mean_ci_known_cases():
    mean, low, high = metrics.mean_ci([1.0] * 5 + [0.0] * 5)
    se = (0.5 * 0.5 * 10 / 9 / 10) ** 0.5
    assert mean == 0.5
    assert low == pytest.approx(0.5 - 1.959964 * se, abs=1e-6)
    assert high == pytest.approx(0.5 + 1.959964 * se, abs=1e-6)
    assert metrics.mean_ci([0.7]) == (0.7, 0.7, 0.7)
    assert metrics.mean_ci([1.0, 1.0]) == (1.0, 1.0, 1.0)


def test_wilson_known_cases():
    low, high = metrics.wilson(5, 10)
    assert (round(low, 4), round(high, 4)) == (0.2366, 0.7634)
    low, high = metrics.wilson(0, 20)
    assert low == 0.0 and high == pytest.approx(0.1611, abs=1e-4)
    low, high = metrics.wilson(20, 20)
    assert high == 1.0 and low == pytest.approx(0.8389, abs=1e-4)


def _rec(row, k, correct, extracted, finish="stop", reason=None, tokens=10):
    return {
        "row": row,
        "k": k,
        "meta": {"finish_reason": finish, "completion_tokens": tokens},
        "grade": {
            "correct": correct,
            "reason": reason or ("correct" if correct else "wrong_answer"),
            "extracted": extracted,
        },
    }


def test_bench_metrics_aggregates_per_problem():
    scored = [
        _rec("a", 0, True, "2"),
        _rec("a", 1, False, "3"),
        _rec("a", 2, True, "2"),
        _rec("b", 0, False, None, finish="length", reason="truncated", tokens=64),
        _rec("b", 1, False, None, reason="no_answer"),
        _rec("b", 2, False, "7"),
    ]
    m = bench_metrics(scored, "math", 3, [1, 2, 8])
    assert m["problems"] == 2 and m["samples"] == 6
    assert m["pass@1"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["pass@2"] == pytest.approx((1.0 + 0.0) / 2)  # a: 1 - C(1,2)/C(3,2) = 1
    assert "pass@8" not in m  # k above n is skipped
    assert m["cons@3"] == 0.5
    assert m["truncation_rate"] == pytest.approx(1 / 6)
    assert m["no_answer_rate"] == pytest.approx(1 / 6)
    assert m["reasons"]["truncated"] == 1
    assert m["mean_completion_tokens"] == pytest.approx((5 * 10 + 64) / 6)


def test_pool_equivalence_votes_like_the_math_verifier():
    from r1distill.evaluate.stage import pool_equivalence
    from r1distill.grading.math import MathPool

    with MathPool(workers=1) as pool:
        equal = pool_equivalence(pool, [["1/2", "0.5", "3", None], ["\\frac{1}{2}", "0.5"]])
    assert equal("1/2", "0.5") and equal("0.5", "1/2") and equal("\\frac{1}{2}", "0.5")
    assert not equal("3", "0.5")
    assert not equal("1/2", "\\frac{1}{2}")  # different problems: never compared, so not known equal
    answers, correct = ["3", "1/2", "0.5"], [False, True, True]
    assert metrics.cons_at_k(answers, correct, equal=equal) == 1.0


def test_bench_metrics_single_sample_adds_wilson():
    scored = [_rec(str(i), 0, i < 5, str(i)) for i in range(10)]
    m = bench_metrics(scored, "math", 1, [1])
    assert m["pass@1"] == 0.5 and "cons@1" not in m
    assert [round(x, 4) for x in m["pass@1_wilson95"]] == [0.2366, 0.7634]


def test_module_doctests_pass():
    import doctest

    result = doctest.testmod(metrics)
    assert result.attempted >= 10 and result.failed == 0


def test_t_interval_is_wider_than_the_normal_one_on_small_benchmarks():
    assert metrics.t_quantile(0.975, 29) == pytest.approx(2.04523, abs=1e-4)  # AIME's 30 problems
    assert metrics.t_quantile(0.975, 4) == pytest.approx(2.77645, abs=1e-4)
    assert metrics.t_quantile(0.975, 499) == pytest.approx(1.96473, abs=1e-4)
    assert metrics.t_sf2(2.77645, 4) == pytest.approx(0.05, abs=1e-5)
    values = [1.0] * 12 + [0.0] * 18
    mean, low, high = metrics.t_ci(values)
    _, nlow, nhigh = metrics.mean_ci(values)
    assert mean == 0.4 and low < nlow and high > nhigh
    assert (high - low) / (nhigh - nlow) == pytest.approx(2.04523 / 1.959964, rel=1e-4)


def _pair():
    """30 problems; B solves 15; A solves the same 15 plus 6 more: unpaired intervals overlap, the paired one not."""
    b = {f"p{i}": float(i < 15) for i in range(30)}
    a = {f"p{i}": float(i < 21) for i in range(30)}
    return a, b


def test_paired_delta_bootstrap_and_t_on_a_known_difference():
    a, b = _pair()
    _, alow, _ = metrics.t_ci(list(a.values()))
    _, _, bhigh = metrics.t_ci(list(b.values()))
    assert alow < bhigh  # separately, the two intervals overlap
    boot = metrics.paired_delta(a, b, seed=0)
    t = metrics.paired_delta(a, b, method="t")
    assert boot["delta"] == t["delta"] == pytest.approx(6 / 30)
    assert (boot["problems"], boot["wins"], boot["losses"], boot["a"], boot["b"]) == (30, 6, 0, 0.7, 0.5)
    assert 0 < boot["ci95"][0] < 0.2 < boot["ci95"][1]
    # paired t by hand: d = 1 on 6 problems, 0 on 24
    sd = (6 * 0.8**2 + 24 * 0.2**2) ** 0.5 / 29**0.5
    half = metrics.t_quantile(0.975, 29) * sd / 30**0.5
    assert t["ci95"] == pytest.approx([0.2 - half, 0.2 + half])
    assert t["p_value"] == pytest.approx(metrics.t_sf2(0.2 / (sd / 30**0.5), 29))
    # sign flips of six 1s: |mean| >= 0.2 only when all six agree: p = 2 / 64
    assert boot["p_value"] == pytest.approx(2 / 64, abs=0.01) and t["p_value"] < 0.05
    assert "bootstrap" in boot["method"] and "seed 0" in boot["method"] and "paired t" in t["method"]


def test_paired_delta_is_seeded_pairs_by_problem_and_takes_sample_flags():
    a, b = _pair()
    assert metrics.paired_delta(a, b, seed=3) == metrics.paired_delta(a, b, seed=3)
    flags = {p: [v == 1.0, v == 1.0] for p, v in a.items()}  # two samples per problem, same outcome
    assert metrics.paired_delta(flags, b)["delta"] == pytest.approx(0.2)
    shuffled = dict(reversed(list(b.items())))  # order does not matter, ids do
    assert metrics.paired_delta(a, shuffled) == metrics.paired_delta(a, b)
    same = metrics.paired_delta(a, a)
    assert (same["delta"], same["ci95"], same["p_value"]) == (0.0, [0.0, 0.0], 1.0)
    extra = metrics.paired_delta({**a, "only-a": 1.0}, {**b, "x": 0.0, "y": 1.0})
    assert (extra["problems"], extra["only_a"], extra["only_b"]) == (30, 1, 2)
    assert metrics.paired_delta({"q": 1.0}, {"r": 0.0})["delta"] is None
    with pytest.raises(ValueError, match="method"):
        metrics.paired_delta(a, b, method="z")
    rows = [{"row": "p0", "grade": {"correct": True}}, {"row": "p0", "grade": {"correct": False}}]
    assert metrics.outcomes_by_problem(rows) == {"p0": 0.5}


def test_judged_verdicts_are_counted_apart_from_the_rules():
    from r1distill.evaluate import report as eval_report

    def rec(row, k, correct, by=None):
        grade = {"correct": correct, "reason": "judge_correct" if by else ("correct" if correct else "wrong_answer")}
        return {
            "row": row,
            "k": k,
            "meta": {"finish_reason": "stop"},
            "grade": {**grade, **({"verdict_by": by} if by else {})},
        }

    scored = [rec("a", 0, True), rec("a", 1, True, "judge"), rec("b", 0, False), rec("b", 1, True, "judge")]
    m = bench_metrics(scored, "math", 2, [1], equal=lambda x, y: x == y)
    assert (m["pass@1"], m["judged"], m["judged_correct"], m["pass@1_rules"]) == (0.75, 2, 2, 0.25)
    assert m["reasons"]["judge_correct"] == 2
    assert bench_metrics(scored[:1], "math", 1, [1])["judged"] == 0
    report = {"model": "m", "n": 2, "benchmarks": {"gsm8k": m}, "caveats": []}
    report["environment"] = eval_report.environment(evaluate_config())
    md = eval_report.report_markdown(report)
    assert "gsm8k (model): 2 of 4 verdicts are the LLM judge's (2 correct); the rules alone give pass@1 25.0" in md


def evaluate_config():
    from r1distill.evaluate.stage import EvaluateConfig

    return EvaluateConfig()
