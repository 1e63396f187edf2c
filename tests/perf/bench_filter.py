"""Filter stage benchmark (a plain script: `.venv/bin/python tests/perf/bench_filter.py [--samples 100000]`).

1. Policy throughput: MB/s of completion text per core through filters/r1.yaml on real R1 traces
   (../shared/data/r1_real), in one process and in two (near-linear scaling is the goal; target >= 10 MB/s/core),
   and per check on English and on non-English traces (which check dominates where).
2. The whole stage (read, policy, decontam, dedup, write) with 1 and 2 workers on a folder of R1 traces.
3. Dedup + decontamination for N samples (default 100,000: 25,000 problems x 4 completions, against every
   benchmark in ../shared/benchmarks), run as the stage with an empty policy and 2 workers (target < 2 minutes).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from r1distill.core.records import Sample  # noqa: E402
from r1distill.core.store import ShardWriter, write_manifest  # noqa: E402
from r1distill.filter import stage as filter_stage  # noqa: E402
from r1distill.filter.checks.policy import load_policy  # noqa: E402

SHARED = ROOT.parent / "shared"
REAL = SHARED / "data" / "r1_real" / "arena_hard_r1.jsonl"
BENCHMARKS = {
    "math500": "problem",
    "aime24": "problem",
    "aime25": "problem",
    "amc23": "problem,question",
    "gsm8k_test": "question",
    "mbpp": "text",
    "livecodebench_public": "problem",
}
NON_ENGLISH = re.compile(r"[\u0400-\u04ff\u3040-\u9fff\uac00-\ud7af]|Thơ|Viết|CÁCH")


def real_samples(english_only: bool) -> list[Sample]:
    out = []
    for line in REAL.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        completion = "<think>\n" + r["reasoning"] + "\n</think>\n\n" + r["answer"]
        if english_only and NON_ENGLISH.search(r["prompt"] + completion):
            continue
        out.append(
            Sample(f"arena/{r['id']}/0", "arena", r["id"], 0, "math", r["prompt"],
                   [{"role": "user", "content": r["prompt"]}], None, completion, {"finish_reason": "stop"})
        )  # fmt: skip
    return out


def _policy_rate(args: tuple[list[Sample], float]) -> tuple[int, float, float]:
    """Bytes of completion judged, CPU seconds and wall seconds, looping over the samples for `seconds` of wall."""
    samples, seconds = args
    policy = load_policy(ROOT / "filters" / "r1.yaml", {"correct": False})
    for s in samples:
        policy(s)  # warm caches (prompt languages, regexes) as a long run would have them
    done, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        for s in samples:
            policy(s)
            done += len(s.completion.encode("utf-8"))
    return done, time.process_time() - cpu, time.perf_counter() - start


def bench_policy(seconds: float) -> None:
    """Per-core rates use CPU time (this machine's 2 cores are shared: wall time also counts waiting for a core)."""
    for label, english_only in (("English R1 traces", True), ("all 51 R1 traces (28% non-English)", False)):
        samples = real_samples(english_only)
        mean = sum(len(s.completion) for s in samples) / len(samples)
        nbytes, cpu, wall = _policy_rate((samples, seconds))
        print(f"policy r1.yaml, {label} ({len(samples)} samples, mean {mean:,.0f} chars):")
        print(
            f"  1 process  : {nbytes / cpu / 1e6:6.2f} MB/s per core (CPU time); {nbytes / wall / 1e6:6.2f} MB/s wall"
        )
        with mp.get_context("fork").Pool(2) as pool:
            results = pool.map(_policy_rate, [(samples, seconds)] * 2)
        per_core = [b / c / 1e6 for b, c, _ in results]
        total_wall = sum(b for b, _, _ in results) / max(w for _, _, w in results) / 1e6
        print(f"  2 processes: {per_core[0]:.2f} and {per_core[1]:.2f} MB/s per core (CPU time); "
              f"{total_wall:.2f} MB/s wall together = x{total_wall / (nbytes / wall / 1e6):.2f} of one")  # fmt: skip


def bench_checks(rounds: int = 7) -> None:
    """CPU ms per pass and MB/s of each policy check (best of `rounds`; prompt languages cached, as in a corpus
    where a prompt's k samples share it), on the English and on the non-English traces."""
    policy = load_policy(ROOT / "filters" / "r1.yaml", {"correct": False})
    everything = real_samples(english_only=False)
    english = {s.id for s in real_samples(english_only=True)}
    for label, group in (("English", [s for s in everything if s.id in english]),
                         ("non-English", [s for s in everything if s.id not in english])):  # fmt: skip
        nbytes = sum(len(s.completion.encode("utf-8")) for s in group)
        for s in group:
            policy(s)
        cells = []
        for entry in policy.entries:
            best = float("inf")
            for _ in range(rounds):
                cpu = time.process_time()
                for s in group:
                    entry.check(s)
                best = min(best, time.process_time() - cpu)
            cells.append(f"{entry.name} {1000 * best:.1f} ms ({nbytes / max(best, 1e-9) / 1e6:.0f} MB/s)")
        print(f"per check, {label} traces ({len(group)}, {nbytes / 1e6:.2f} MB): " + "; ".join(cells))


def write_folder(path: Path, samples: list[Sample]) -> int:
    with ShardWriter(path) as w:
        for s in samples:
            w.write(s.to_json())
    write_manifest(path, {"stage": "verify"})
    return sum(len(s.completion.encode("utf-8")) for s in samples)


def bench_stage(tmp: Path, copies: int) -> None:
    base = real_samples(english_only=True)
    samples = []
    for c in range(copies):
        for s in base:  # distinct ids and problems; a changed last line keeps them from being exact duplicates
            samples.append(Sample(**{**s.__dict__, "id": f"arena/{s.row}-{c}/0", "row": f"{s.row}-{c}",
                                     "problem": f"{s.problem}\n(variant {c})",
                                     "completion": s.completion + f"\n\nVariant {c}."}))  # fmt: skip
    nbytes = write_folder(tmp / "stage_in", samples)
    for workers in (1, 2):
        cfg = filter_stage.Config(overrides={"correct": False}, workers=workers)
        start, cpu = time.perf_counter(), _cpu()
        manifest = filter_stage.run(cfg, tmp / "stage_in", tmp / f"stage_out{workers}")
        dt, cpu = time.perf_counter() - start, _cpu() - cpu
        print(f"stage, {len(samples)} samples ({nbytes / 1e6:.1f} MB), workers={workers}: {dt:5.1f} s wall, "
              f"{nbytes / dt / 1e6:.2f} MB/s wall, {nbytes / cpu / 1e6:.2f} MB/s per CPU-second; "
              f"kept {manifest['counts']['kept']}")  # fmt: skip


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the stage's worker pool)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def synthetic(n_samples: int, per_problem: int, completion_chars: int, seed: int = 0) -> list[Sample]:
    """Math-like problems (words + numbers) and completions of random sentences of real R1 reasoning."""
    rng = random.Random(seed)
    vocab = ("find the number of integers such that sum product of all real values triangle circle radius area "
             "probability two dice remainder when divided by prime factors sequence term").split()  # fmt: skip
    source = " ".join(json.loads(line)["reasoning"] for line in REAL.read_text().splitlines())
    sentences = [x for x in re.split(r"(?<=[.!?])\s+", source) if len(x) > 20]
    per = max(1, completion_chars // (sum(map(len, sentences)) // len(sentences)))
    out = []
    for p in range(n_samples // per_problem):
        problem = " ".join(rng.choice(vocab) if rng.random() < 0.8 else str(rng.randint(1, 999)) for _ in range(40))
        for k in range(per_problem):
            body = " ".join(rng.sample(sentences, per)) + f" The answer is {rng.randint(0, 10**9)}."
            completion = f"<think>\n{body}\n</think>\n\nThe answer is {p}."
            out.append(Sample(f"syn/{p}/{k}", "syn", str(p), k, "math", problem,
                              [{"role": "user", "content": problem}], None, completion, {}))  # fmt: skip
    return out


def bench_dedup_decontam(tmp: Path, n: int, completion_chars: int) -> None:
    t0 = time.perf_counter()
    samples = synthetic(n, 4, completion_chars)
    # Plant contamination and duplicates so every path runs: a benchmark problem, a duplicate completion.
    math500 = [
        json.loads(line)["problem"] for line in (SHARED / "benchmarks" / "math500.jsonl").read_text().splitlines()
    ]
    for i in range(min(200, len(samples) // 97)):
        samples[i * 97].problem = math500[i]
    samples[3].completion = samples[2].completion
    nbytes = write_folder(tmp / "dd_in", samples)
    built = time.perf_counter() - t0
    print(f"\ndedup+decontam: {len(samples):,} samples, {len(samples) // 4:,} problems, completions "
          f"~{completion_chars:,} chars ({nbytes / 1e6:.0f} MB); built in {built:.0f} s")  # fmt: skip
    policy = tmp / "empty.yaml"
    policy.write_text("name: none\nchecks: []\n")
    benches = [filter_stage.BenchmarkFile(str(SHARED / "benchmarks" / f"{b}.jsonl"), f) for b, f in BENCHMARKS.items()]
    for workers in (2,):
        cfg = filter_stage.Config(policy=str(policy), workers=workers, batch_size=256)
        cfg.decontam.benchmarks = benches
        start, cpu = time.perf_counter(), _cpu()
        manifest = filter_stage.run(cfg, tmp / "dd_in", tmp / f"dd_out{workers}")
        dt, cpu = time.perf_counter() - start, _cpu() - cpu
        print(f"  stage with empty policy, workers={workers}: {dt:.1f} s wall ({cpu:.1f} CPU-s) for {len(samples):,} "
              f"samples (read, decontam vs {len(benches)} benchmarks, problem+completion dedup, write)")  # fmt: skip
        print(f"  drops: {manifest['reasons']}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=4.0, help="per policy-throughput measurement")
    p.add_argument("--copies", type=int, default=20, help="copies of the English R1 traces for the stage run")
    p.add_argument("--samples", type=int, default=100_000, help="samples for dedup + decontamination")
    p.add_argument("--completion-chars", type=int, default=4000)
    args = p.parse_args()
    if not REAL.exists():
        print(f"real R1 outputs not found at {REAL}; nothing to measure", file=sys.stderr)
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="bench_filter_"))
    try:
        bench_policy(args.seconds)
        bench_checks()
        bench_stage(tmp, args.copies)
        bench_dedup_decontam(tmp, args.samples, args.completion_chars)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
