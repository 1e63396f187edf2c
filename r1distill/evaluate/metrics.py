"""Evaluation metrics, pure functions over per-sample outcomes (no I/O, no model).

- `pass_at_k`: the unbiased estimator of Chen et al. (2021), 1 - C(n-c, k)/C(n, k), as a stable product.
- `cons_at_k`: majority vote over extracted answers; equivalent answers vote together via a caller-given `equal`.
- `mean_ci`: the mean of per-problem scores ± 1.96 standard errors (normal approximation over problems: the
  problems are the sampling unit, a problem's n samples are not independent draws of the benchmark).
- `wilson`: Wilson score interval for a plain binomial proportion (e.g. n=1 accuracy), well-behaved near 0 and 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

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
