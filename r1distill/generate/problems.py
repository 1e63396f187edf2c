"""Built-in verifiable problem sets, generated procedurally so the quickstart needs no download.

Each row has `id`, `problem`, `answer` (an integer as a string) and `solution` (a worked line), like the local
JSONL sources users bring. The same (count, seed) always yields the same rows.
"""

from __future__ import annotations

import random
from collections.abc import Callable

_NAMES = ["Ava", "Ben", "Chen", "Dana", "Eli", "Fatima", "Goro", "Hana", "Ivan", "Jia", "Kofi", "Lena"]
_ITEMS = ["apples", "books", "marbles", "stamps", "coins", "pencils", "cards", "shells"]


def _sum(rng: random.Random) -> tuple[str, int, str]:
    a, b = rng.randint(2, 60), rng.randint(2, 60)
    return f"What is {a} + {b}?", a + b, f"{a} + {b} = {a + b}"


def _product(rng: random.Random) -> tuple[str, int, str]:
    a, b = rng.randint(2, 15), rng.randint(2, 12)
    return f"What is {a} times {b}?", a * b, f"{a} * {b} = {a * b}"


def _word(rng: random.Random) -> tuple[str, int, str]:
    name, item = rng.choice(_NAMES), rng.choice(_ITEMS)
    have, buy, give = rng.randint(5, 40), rng.randint(2, 20), rng.randint(1, 5)
    answer = have + buy - give
    text = f"{name} has {have} {item}, buys {buy} more and gives {give} away. How many {item} does {name} have now?"
    return text, answer, f"{have} + {buy} - {give} = {answer}"


def _linear(rng: random.Random) -> tuple[str, int, str]:
    x, a = rng.randint(1, 20), rng.randint(2, 9)
    b = rng.randint(1, 30)
    return f"Solve for x: {a}x + {b} = {a * x + b}.", x, f"{a}x = {a * x}, so x = {x}"


_KINDS: list[Callable[[random.Random], tuple[str, int, str]]] = [_sum, _product, _word, _linear]


def arithmetic(count: int = 32, seed: int = 0) -> list[dict[str, str]]:
    """`count` grade-school arithmetic problems with integer answers, cycling through four kinds."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        problem, answer, solution = _KINDS[i % len(_KINDS)](rng)
        rows.append({"id": f"arith-{seed}-{i}", "problem": problem, "answer": str(answer), "solution": solution})
    return rows


BUILTIN = {"arithmetic": arithmetic}
