"""Throughput of the shared graders on this machine (a plain script, not a test).

    .venv/bin/python tests/perf/bench_verify.py [--n-code 100]

Math: verdicts/s of a 2-worker MathPool over the MATH-500 references (../shared/benchmarks/math500.jsonl):
references against their own solution's boxed answer (the common "correct" case), the same with the exact-number
and string shortcuts off (every pair through math-verify), and references against another problem's answer (the
"wrong" case, where math-verify works hardest): all 500 pairs distinct, and as verify/rl see them, 8 samples per
problem sharing 3 distinct wrong answers, graded as completions by `Grader`. `--pebble` grades the distinct wrong
pairs with pebble's `ProcessPool(timeout=)` too (when pebble is installed; it is not a dependency).
Code: sandboxed runs/s of trivial stdin programs, 2 at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from r1distill.core.records import Sample
from r1distill.grading import Grader
from r1distill.grading.answer import last_boxed
from r1distill.grading.code import grade_code_many
from r1distill.grading.math import math_equal
from r1distill.grading.pool import MathPool
from r1distill.grading.sandbox import Limits, isolation_level

SHARED = Path(__file__).resolve().parents[3] / "shared" / "benchmarks"


def bench_math(workers: int) -> None:
    path = SHARED / "math500.jsonl"
    rows = [json.loads(line) for line in path.open(encoding="utf-8")]
    answers = [r["answer"] for r in rows]
    cases = {
        "reference vs own solution's boxed answer": [(last_boxed(r["solution"]), r["answer"]) for r in rows],
        "same, shortcuts off (all math-verify)": [(last_boxed(r["solution"]), r["answer"]) for r in rows],
        "reference vs another problem's answer": [(answers[i - 7], answers[i]) for i in range(len(rows))],
    }
    for name, pairs in cases.items():
        start = time.monotonic()
        with MathPool(workers=workers, timeout_s=5, shortcuts="shortcuts off" not in name) as pool:
            pool.grade([(str(k), str(k)) for k in range(workers)])  # start the workers: measured apart from grading
            ready = time.monotonic()
            results = pool.grade(pairs)
            done = time.monotonic()
        correct = sum(r == "correct" for r, _ in results)
        timeouts = sum(r == "timeout" for r, _ in results)
        print(
            f"math  {name:42s} {len(pairs) / (done - ready):7.0f} verdicts/s  ({len(pairs)} in {done - ready:.2f}s"
            f" + {ready - start:.2f}s pool start; {correct} correct, {timeouts} timeout)"
        )


def bench_samples(workers: int, n: int = 8) -> None:
    """verify's and rl's case: n samples per problem, three distinct wrong answers among them, as completions."""
    rows = [json.loads(line) for line in (SHARED / "math500.jsonl").open(encoding="utf-8")]
    answers = [r["answer"] for r in rows]
    samples = [
        Sample(f"b/{i}/{k}", "b", str(i), k, "math", "", [], answers[i],
               f"<think>\\nwork\\n</think>\\n\\nSo the answer is $\\boxed{{{answers[i - (7, 13, 29)[k % 3]]}}}$.", {})
        for i in range(len(rows)) for k in range(n)
    ]  # fmt: skip
    with Grader(workers=workers, math_timeout_s=5) as grader:
        grader.grade([Sample(f"w/{k}", "w", "w", k, "math", "", [], str(k), str(k), {}) for k in range(workers)])
        start = time.monotonic()
        grades = grader.grade(samples)
        elapsed = time.monotonic() - start
    correct = sum(g.correct for g in grades)
    timeouts = sum(g.reason == "timeout" for g in grades)
    name = f"{n} samples/problem, 3 distinct wrong answers"
    print(f"math  {name:42s} {len(samples) / elapsed:7.0f} verdicts/s  ({len(samples)} in {elapsed:.2f}s; "
          f"{correct} correct, {timeouts} timeout)")  # fmt: skip


def _pebble_item(pred: str, gold: str) -> bool:
    return math_equal(pred, gold)


def bench_pebble(workers: int, n: int = 8, rounds: int = 3) -> None:
    """This pool against pebble's `ProcessPool(timeout=)` on the same work, `rounds` alternating runs each, median
    wall time (a loaded machine swings single runs by 2x): the distinct pairs of the samples case (deduplicated first,
    as the Grader does: the cost is math-verify's), and equal pairs (the shortcut decides: the cost is the pool's)."""
    try:
        from pebble import ProcessPool
    except ImportError:
        print("math  pebble: not installed (pip install pebble to compare)")
        return
    rows = [json.loads(line) for line in (SHARED / "math500.jsonl").open(encoding="utf-8")]
    answers = [r["answer"] for r in rows]
    wrong = [(answers[i - (7, 13, 29)[k % 3]], answers[i]) for i in range(len(rows)) for k in range(n)]
    right = [(last_boxed(r["solution"]), r["answer"]) for r in rows]  # the shortcut decides: the pools' own cost
    for what, pairs in (("distinct wrong pairs", list(dict.fromkeys(wrong))), ("equal pairs", right)):
        _race(what, pairs, workers, rounds, ProcessPool)


def _race(what: str, pairs: list[tuple[str, str]], workers: int, rounds: int, ProcessPool: Any) -> None:  # noqa: N803
    walls: dict[str, list[float]] = {"MathPool": [], "pebble ProcessPool": []}
    same = 0
    for _ in range(rounds):
        with MathPool(workers=workers, timeout_s=5) as pool:
            pool.grade([(str(k), str(k)) for k in range(workers)])
            start = time.monotonic()
            ours = [reason == "correct" for reason, _ in pool.grade(pairs)]
            walls["MathPool"].append(time.monotonic() - start)
        with ProcessPool(max_workers=workers) as pebble:
            list(pebble.map(_pebble_item, ["1"] * workers, ["1"] * workers, timeout=60).result())  # warm up
            start = time.monotonic()
            futures = [pebble.schedule(_pebble_item, args=p, timeout=5) for p in pairs]
            theirs = []
            for f in futures:
                try:
                    theirs.append(f.result())
                except Exception:  # TimeoutError: the item was killed
                    theirs.append(None)
            walls["pebble ProcessPool"].append(time.monotonic() - start)
        same = sum(a == b for a, b in zip(ours, theirs, strict=True))
    for name, times in walls.items():
        median = sorted(times)[len(times) // 2]
        label = f"{name}, {len(pairs)} {what}"
        spread = ", ".join(f"{t:.2f}" for t in times)
        print(f"math  {label:42s} {len(pairs) / median:7.0f} verdicts/s  (median of {spread}s; "
              f"{same}/{len(pairs)} same verdicts)")  # fmt: skip


def bench_code(n: int, workers: int) -> None:
    """`workers` sandboxes at a time (the verify stage runs 4 per math worker by default)."""
    level = isolation_level()
    answer = "```python\nprint(int(input()) * 2)\n```"
    ref = {"tests": [{"input": "21\n", "output": "42\n", "testtype": "stdin"}]}
    start = time.monotonic()
    grades = grade_code_many([(answer, ref)] * n, Limits(timeout_s=10), workers=workers)
    elapsed = time.monotonic() - start
    ok = sum(g.correct for g in grades)
    print(f"code  trivial stdin program, isolation={level:10s} {n / elapsed:7.1f} runs/s  ({n} runs in {elapsed:.2f}s, "
          f"{ok} correct, {workers} at a time)")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--n-code", type=int, default=100)
    p.add_argument("--pebble", action="store_true", help="also grade the wrong pairs with pebble's ProcessPool")
    args = p.parse_args()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"cores: {os.cpu_count()}  load average: {load}  (other work on the machine lowers every figure)")
    if (SHARED / "math500.jsonl").exists():
        bench_math(args.workers)
        bench_samples(args.workers)
        if args.pebble:
            bench_pebble(args.workers)
    else:
        print(f"math  skipped: {SHARED / 'math500.jsonl'} is absent")
    for concurrency in (args.workers, 4 * args.workers):
        bench_code(args.n_code, concurrency)


if __name__ == "__main__":
    main()
