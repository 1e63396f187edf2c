"""Peak memory and samples/s of `r1distill generate` (and optionally verify) as the run grows: memory must stay flat.

    .venv/bin/python tests/perf/bench_scale.py [--sizes 10000,100000,1000000] [--n 4] [--stages generate,verify]
    .venv/bin/python tests/perf/bench_scale.py --engine vllm --sizes 1000,4000,16000 --max-tokens 4

Each size runs in its own process (peak RSS is per process: `resource.getrusage(RUSAGE_SELF).ru_maxrss`), on a
JSONL prompt file written for it with `size / n` prompts. The teacher is a stand-in that implements the real
`Engine` interface (holds at most `max_in_flight` requests, answers each at once with a fixed boxed answer), so
what is measured is r1distill's own work: reading prompts, building requests, writing shards, checking the folder.
`--engine vllm` runs the bundled teacher instead (real vLLM, a few output tokens a sample) to show the same with a
real engine; its throughput is tests/perf/bench_generate.py's subject. Each process first runs 100 samples (every
library imported, nothing yet to hold; that RSS is printed as `warm`), then the timed run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


BASELINE = 100


def _stand_in_engine(max_in_flight: int):
    from r1distill.generate.engines import Completion, Engine, Request

    class StandIn(Engine):
        """Answers every request with a fixed 60-token-like reasoning and a boxed answer, `max_in_flight` at a time."""

        name = "stand-in"

        def generate(self, requests: Iterable[Request]) -> Iterator[Completion]:
            pending = iter(requests)
            window: list[Request] = []
            while True:
                while len(window) < max_in_flight and (req := next(pending, None)) is not None:
                    window.append(req)
                if not window:
                    return
                for req in reversed(window):  # completion order differs from submission order, as in a real engine
                    text = "Adding the two numbers step by step gives the total.\n</think>\n\nThe answer is \\boxed{2}."
                    yield Completion(req.id, text, "stop", 40, 60)
                window.clear()

    return StandIn()


def _real_engine():
    """The bundled teacher under in-process vLLM, for the memory of a real engine run (use small sizes on CPU)."""
    from r1distill.core.models import default_teacher
    from r1distill.generate.engines.vllm_local import VLLMEngine

    return VLLMEngine(str(default_teacher()), {"dtype": "bfloat16", "max_model_len": 512, "enforce_eager": True})


def child(size: int, n: int, stages: list[str], work: Path, real: bool = False, max_tokens: int = 4) -> dict:
    from r1distill.generate.prompts import SourceConfig
    from r1distill.generate.stage import GenerateConfig
    from r1distill.generate.stage import run as generate

    def config(samples: int, name: str) -> GenerateConfig:
        prompts = work / f"{name}.jsonl"
        with open(prompts, "w") as f:
            for i in range(samples // n):
                row = {"id": f"p{i}", "problem": f"What is {i} + {i % 7}?", "answer": str(i + i % 7)}
                f.write(json.dumps(row) + "\n")
        source = SourceConfig(name="s", path=str(prompts), id_field="id")
        sampling = {"max_tokens": max_tokens}
        return GenerateConfig(sources=[source], n=n, sampling=sampling, seed=None, rows_per_shard=50_000)

    engine = _real_engine() if real else _stand_in_engine(256)
    # Warm-up: imports vLLM (for the sampling check) and the teacher's tokenizer (for the prompt-length check).
    generate(config(BASELINE, "warm"), None, work / "warm", engine=engine)
    cfg = config(size, "prompts")
    out: dict = {"size": size, "warm_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    t0 = time.perf_counter()
    manifest = generate(cfg, None, work / "generate", engine=engine)
    wall = time.perf_counter() - t0
    assert manifest["counts"]["samples"] == size // n * n
    out["generate_samples_per_s"] = round(manifest["counts"]["samples"] / wall)
    out["generate_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    if "verify" in stages:
        from r1distill.verify.stage import VerifyConfig
        from r1distill.verify.stage import run as verify

        t0 = time.perf_counter()
        m = verify(VerifyConfig(workers=1), work / "generate", work / "verify")
        out["verify_samples_per_s"] = round(size / (time.perf_counter() - t0))
        out["verify_kept"] = m.get("counts", {}).get("kept")
        out["verify_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000,1000000", help="requested samples per run, comma-separated")
    p.add_argument("--n", type=int, default=4, help="samples per prompt")
    p.add_argument("--stages", default="generate", help="generate, or generate,verify")
    p.add_argument("--engine", choices=("stand-in", "vllm"), default="stand-in", help="vllm: the bundled teacher")
    p.add_argument("--max-tokens", type=int, default=4, help="per sample, with --engine vllm")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    stages = args.stages.split(",")
    if args.child is not None:
        with tempfile.TemporaryDirectory() as tmp:
            real = args.engine == "vllm"
            print(json.dumps(child(args.child, args.n, stages, Path(tmp), real, args.max_tokens)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"{'samples':>9}  {'warm RSS MiB':>12}  {'peak RSS MiB':>12}  {'generate samples/s':>18}"
        + ("  verify samples/s" * ("verify" in stages))
    )
    for size in sizes:
        cmd = [sys.executable, __file__, "--child", str(size), "--n", str(args.n), "--stages", args.stages]
        cmd += ["--engine", args.engine, "--max-tokens", str(args.max_tokens)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            sys.exit(f"size {size} failed:\n{proc.stderr[-3000:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        label = f"{size:,}"
        line = f"{label:>9}  {r['warm_rss_mib']:>12}  {r['peak_rss_mib']:>12}  {r['generate_samples_per_s']:>18}"
        if "verify" in stages:
            line += f"  {r.get('verify_samples_per_s', '-'):>16}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
