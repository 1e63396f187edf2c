"""Throughput of the shared graders on this machine (a plain script, not a test).

    .venv/bin/python tests/perf/bench_verify.py [--n-code 100]

Math: verdicts/s of a 2-worker MathPool over the MATH-500 references (../shared/benchmarks/math500.jsonl):
references against their own solution's boxed answer (the common "correct" case), the same with the exact-number
and string shortcuts off (every pair through math-verify), and references against another problem's answer (the
"wrong" case, where math-verify works hardest). Code: sandboxed runs/s of trivial stdin programs, 2 at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from r1distill.grading.answer import last_boxed
from r1distill.grading.code import grade_code_many
from r1distill.grading.math import MathPool
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
            pool.grade([("1", "1")] * workers)  # start the workers: measured apart from grading
            ready = time.monotonic()
            results = pool.grade(pairs)
            done = time.monotonic()
        correct = sum(r == "correct" for r, _ in results)
        timeouts = sum(r == "timeout" for r, _ in results)
        print(
            f"math  {name:42s} {len(pairs) / (done - ready):7.0f} verdicts/s  ({len(pairs)} in {done - ready:.2f}s"
            f" + {ready - start:.2f}s pool start; {correct} correct, {timeouts} timeout)"
        )


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
    args = p.parse_args()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"cores: {os.cpu_count()}  load average: {load}  (other work on the machine lowers every figure)")
    if (SHARED / "math500.jsonl").exists():
        bench_math(args.workers)
    else:
        print(f"math  skipped: {SHARED / 'math500.jsonl'} is absent")
    for concurrency in (args.workers, 4 * args.workers):
        bench_code(args.n_code, concurrency)


if __name__ == "__main__":
    main()
