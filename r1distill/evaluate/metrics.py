"""Evaluation metrics, pure functions over per-sample outcomes (no I/O, no model).

- `pass_at_k`: the unbiased estimator of Chen et al. (2021), 1 - C(n-c, k)/C(n, k), as a stable product.
- `cons_at_k`: majority vote over extracted answers; equivalent answers vote together via a caller-given `equal`.
- `mean_ci`: the mean of per-problem scores ± 1.96 standard errors (normal approximation over problems: the
  problems are the sampling unit, a problem's n samples are not independent draws of the benchmark).
- `t_ci`: the same mean with a Student-t interval (df = problems - 1): what evaluate reports, since the normal one is
  too narrow on small benchmarks (AIME has 30 problems: t_0.975,29 = 2.045 against 1.960).
- `wilson`: Wilson score interval for a plain binomial proportion (e.g. n=1 accuracy), well-behaved near 0 and 1.
- `paired_delta`: two models scored on the same problems: the mean per-problem difference with a paired bootstrap
  95% CI and a paired sign-flip permutation p-value (both seeded), or a paired t interval and p-value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

Z95 = 1.959963984540054


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n (c correct) is correct.

    >>> round(pass_at_k(5, 2, 1), 12)
    0.4
    >>> pass_at_k(5, 2, 5), pass_at_k(5, 0, 3), pass_at_k(5, 5, 2)
    (1.0, 0.0, 1.0)
    >>> round(pass_at_k(10, 3, 2), 6)  # 1 - C(7,2)/C(10,2) = 1 - 21/45
    0.533333
    """
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n (n={n}, c={c}, k={k})")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def majority(answers: Sequence[str | None], equal: Callable[[str, str], bool] | None = None) -> int | None:
    """Index of the first member of the largest group of equivalent answers; None when no answer was extracted.

    Groups are formed greedily against each group's first member; a tie goes to the group seen first (so the result
    is deterministic for a given sample order). `equal` defaults to string equality.

    >>> majority(["3", "1/2", "0.5"], lambda a, b: float(eval(a)) == float(eval(b)))
    1
    >>> majority([None, "7", "8"])
    1
    >>> majority([None, None]) is None
    True
    """
    eq = equal or (lambda a, b: a == b)
    groups: list[list[int]] = []
    for i, ans in enumerate(answers):
        if ans is None:
            continue
        for g in groups:
            if ans == answers[g[0]] or eq(ans, answers[g[0]]):  # type: ignore[arg-type]
                g.append(i)
                break
        else:
            groups.append([i])
    if not groups:
        return None
    best = max(groups, key=lambda g: (len(g), -g[0]))
    return best[0]


def cons_at_k(
    answers: Sequence[str | None],
    correct: Sequence[bool],
    k: int | None = None,
    equal: Callable[[str, str], bool] | None = None,
) -> float:
    """1.0 when the majority answer among the first k samples is correct, else 0.0 (no answers: 0.0).

    >>> cons_at_k(["5", "4", "4"], [True, False, False])
    0.0
    >>> cons_at_k(["5", "4", "4"], [True, False, False], k=1)
    1.0
    """
    k = len(answers) if k is None else k
    winner = majority(list(answers[:k]), equal)
    return 1.0 if winner is not None and correct[winner] else 0.0


def mean_ci(values: Sequence[float], z: float = Z95) -> tuple[float, float, float]:
    """(mean, low, high): mean ± z·SE with SE = sample std / sqrt(len); a single value has a zero-width interval.

    >>> mean_ci([1.0, 0.0, 1.0, 0.0])
    (0.5, 0.0, 1.0)
    """
    if not values:
        return 0.0, 0.0, 0.0
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, m, m
    var = sum((v - m) ** 2 for v in values) / (len(values) - 1)
    half = z * math.sqrt(var / len(values))
    return m, max(0.0, m - half), min(1.0, m + half)


def wilson(successes: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for successes/trials.

    >>> [round(x, 4) for x in wilson(5, 10)]
    [0.2366, 0.7634]
    >>> wilson(0, 0)
    (0.0, 1.0)
    """
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(flags: Sequence[bool]) -> float:
    """Share of True values (0.0 for none).

    >>> rate([True, False, False, True])
    0.5
    """
    return sum(flags) / len(flags) if flags else 0.0


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularized incomplete beta function (modified Lentz)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def t_sf2(t: float, df: int) -> float:
    """Two-sided tail probability P(|T| >= |t|) of Student's t with `df` degrees of freedom.

    >>> round(t_sf2(2.045229642, 29), 4), t_sf2(0.0, 5)
    (0.05, 1.0)
    """
    return _betainc(df / 2.0, 0.5, df / (df + t * t))


def t_quantile(p: float, df: int) -> float:
    """The `p` quantile (p > 0.5) of Student's t with `df` degrees of freedom, by bisection on `t_sf2`.

    >>> round(t_quantile(0.975, 29), 3), round(t_quantile(0.975, 9), 3), round(t_quantile(0.975, 10**6), 3)
    (2.045, 2.262, 1.96)
    """
    tail = 2.0 * (1.0 - p)
    lo, hi = 0.0, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_sf2(mid, df) > tail else (lo, mid)
    return (lo + hi) / 2


def t_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) with a Student-t interval over `values` (clipped to [0, 1]); one value: zero width.

    >>> [round(x, 4) for x in t_ci([1.0] * 5 + [0.0] * 5)]
    [0.5, 0.123, 0.877]
    """
    if len(values) < 2:
        return mean_ci(values)
    return mean_ci(values, t_quantile(0.5 + level / 2, len(values) - 1))


def outcomes_by_problem(scored: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """{problem: its pass rate} from scored sample records (`row`, `grade.correct`): what `paired_delta` takes."""
    hits: dict[str, list[bool]] = {}
    for rec in scored:
        hits.setdefault(str(rec["row"]), []).append(bool(rec["grade"]["correct"]))
    return {row: sum(v) / len(v) for row, v in hits.items()}


PAIRED_METHODS = ("bootstrap", "t")


def paired_delta(
    a: Mapping[str, float | Sequence[bool]],
    b: Mapping[str, float | Sequence[bool]],
    method: str = "bootstrap",
    resamples: int = 10_000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """Δ pass@1 = A - B over the problems both were scored on, paired by problem.

    `a` and `b` map a problem id to that model's outcome on it: a pass rate (mean over its samples) or the samples'
    correctness flags. Pairing removes the between-problem variance both models share (a hard problem is hard for
    both), so the interval is much narrower than two separate ones. `method`:

    - `bootstrap` (default): the percentile interval of `resamples` paired bootstrap means (problems resampled with
      replacement, seeded) and the two-sided p-value of a paired sign-flip permutation test (each problem's
      difference flipped at random, seeded, `resamples` times; (hits + 1) / (resamples + 1)). Makes no normality
      assumption, fine on 30 problems.
    - `t`: the paired t interval (df = problems - 1) and its two-sided p-value.

    Returns {"delta", "ci95" [low, high], "p_value", "method", "problems", "a", "b", "wins", "losses",
    "only_a", "only_b"} (wins/losses: problems where A did better/worse; only_*: problems one side lacks, left
    out). No common problem: delta, ci95 and p_value are None.
    """
    if method not in PAIRED_METHODS:
        raise ValueError(f"paired_delta: method {method!r} is not one of {', '.join(PAIRED_METHODS)}")

    def rate(v: float | Sequence[bool]) -> float:
        return float(v) if isinstance(v, (int, float)) else sum(map(bool, v)) / max(len(v), 1)

    common = sorted(set(a) & set(b))
    xa, xb = [rate(a[p]) for p in common], [rate(b[p]) for p in common]
    diffs = [x - y for x, y in zip(xa, xb, strict=True)]
    n = len(diffs)
    described = (
        f"paired bootstrap ({resamples} resamples, seed {seed}, percentile {100 * level:g}% CI); "
        f"p from a paired sign-flip permutation test ({resamples} draws)"
        if method == "bootstrap"
        else f"paired t ({100 * level:g}% CI, df = problems - 1)"
    )
    out: dict[str, Any] = {
        "problems": n,
        "a": sum(xa) / n if n else None,
        "b": sum(xb) / n if n else None,
        "delta": sum(diffs) / n if n else None,
        "ci95": None,
        "p_value": None,
        "method": described,
        "wins": sum(d > 0 for d in diffs),
        "losses": sum(d < 0 for d in diffs),
        "only_a": len(set(a) - set(b)),
        "only_b": len(set(b) - set(a)),
    }
    if not n:
        return out
    delta = out["delta"]
    if method == "t":
        sd = math.sqrt(sum((d - delta) ** 2 for d in diffs) / (n - 1)) if n > 1 else 0.0
        se = sd / math.sqrt(n)
        if se == 0:  # no spread (or one problem): the difference is what it is
            out["ci95"], out["p_value"] = [delta, delta], 1.0 if delta == 0 else 0.0
            return out
        half = t_quantile(0.5 + level / 2, n - 1) * se
        out["ci95"] = [delta - half, delta + half]
        out["p_value"] = t_sf2(delta / se, n - 1)
        return out
    import numpy as np

    rng = np.random.default_rng(seed)
    d = np.asarray(diffs)
    means, hits, chunk = [], 0, max(1, 2_000_000 // n)  # chunks bound memory on 500-problem benchmarks
    observed = abs(float(d.mean())) - 1e-12
    for start in range(0, resamples, chunk):
        size = min(chunk, resamples - start)
        means.append(d[rng.integers(0, n, size=(size, n))].mean(axis=1))
        signs = rng.integers(0, 2, size=(size, n)) * 2 - 1
        hits += int((np.abs((signs * d).mean(axis=1)) >= observed).sum())
    boot = np.concatenate(means)
    low, high = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    out["ci95"] = [float(low), float(high)]
    out["p_value"] = (hits + 1) / (resamples + 1)
    return out
