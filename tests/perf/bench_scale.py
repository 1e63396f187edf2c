"""Peak memory and samples/s of generate (and verify, filter, build) as a run grows: memory must stay flat.

    .venv/bin/python tests/perf/bench_scale.py [--sizes 10000,100000,1000000] [--n 4] [--stages verify,filter,build]
    .venv/bin/python tests/perf/bench_scale.py --engine vllm --sizes 1000,4000,16000 --max-tokens 4

Each size and stage runs in its own process (peak RSS is per process: `resource.getrusage(RUSAGE_SELF).ru_maxrss`), on a
JSONL prompt file written for it with `size / n` prompts. The teacher is a stand-in that implements the real
`Engine` interface (holds at most `max_in_flight` requests, answers each at once with a fixed boxed answer), so
what is measured is r1distill's own work: reading prompts, building requests, writing shards, checking the folder.
`--engine vllm` runs the bundled teacher instead (real vLLM, a few output tokens a sample) to show the same with a
real engine; its throughput is tests/perf/bench_generate.py's subject. Each process first runs 100 samples (every
library imported, nothing yet to hold; that RSS is printed as `warm`), then the timed run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
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
REPO = Path(__file__).resolve().parents[2]


def _stand_in_engine(max_in_flight: int):
    from r1distill.generate.engines import Completion, Engine, Request

    class StandIn(Engine):
        """Answers every "What is a + b?" with a short correct chain naming the sample, `max_in_flight` at a time."""

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
                    a, b = map(int, re.findall(r"\d+", req.messages[-1]["content"])[:2])
                    text = (
                        f"Adding {a} and {b} step by step for {req.id}: {a} + {b} = {a + b}.\n</think>\n\n"
                        f"The answer is \\boxed{{{a + b}}}."
                    )
                    yield Completion(req.id, text, "stop", 40, 60)
                window.clear()

    return StandIn()


def _real_engine():
    """The bundled teacher under in-process vLLM, for the memory of a real engine run (use small sizes on CPU)."""
    from r1distill.core.models import default_teacher
    from r1distill.generate.engines.vllm_local import VLLMEngine

    return VLLMEngine(str(default_teacher()), {"dtype": "bfloat16", "max_model_len": 512, "enforce_eager": True})


def _rss_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def generate_child(size: int, n: int, work: Path, real: bool, max_tokens: int) -> dict:
    """Generate `size` samples into work/generate after a 100-sample warm-up; returns RSS and rate."""
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
    warm = _rss_mib()
    t0 = time.perf_counter()
    manifest = generate(config(size, "prompts"), None, work / "generate", engine=engine)
    wall = time.perf_counter() - t0
    assert manifest["counts"]["samples"] == size // n * n
    return {"warm": warm, "rss": _rss_mib(), "per_s": round(size / wall)}


def stage_child(stage: str, size: int, work: Path) -> dict:
    """Run `stage` on the previous stage's folder in `work`; returns this process's peak RSS and the rate."""
    module = importlib.import_module(f"r1distill.{stage}.stage")
    previous, cfg = {
        "verify": ("generate", lambda: module.VerifyConfig(workers=1)),
        "filter": ("verify", lambda: module.FilterConfig(policy=str(REPO / "filters" / "r1.yaml"))),
        "build": ("filter", lambda: module.BuildConfig(validation_fraction=0.0)),
    }[stage]
    t0 = time.perf_counter()
    manifest = module.run(cfg(), work / previous, work / stage)
    return {"rss": _rss_mib(), "per_s": round(size / (time.perf_counter() - t0)), "counts": manifest.get("counts")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10000,100000,1000000", help="requested samples per run, comma-separated")
    p.add_argument("--n", type=int, default=4, help="samples per prompt")
    p.add_argument("--stages", default="generate", help="generate, or also verify,filter,build (in that order)")
    p.add_argument("--engine", choices=("stand-in", "vllm"), default="stand-in", help="vllm: the bundled teacher")
    p.add_argument("--max-tokens", type=int, default=4, help="per sample, with --engine vllm")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    p.add_argument("--stage", help=argparse.SUPPRESS)
    p.add_argument("--work", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        work = Path(args.work)
        if args.stage == "generate":
            result = generate_child(args.child, args.n, work, args.engine == "vllm", args.max_tokens)
        else:
            result = stage_child(args.stage, args.child, work)
        print(json.dumps(result))
        return
    stages = ["generate", *(st for st in ("verify", "filter", "build") if st in args.stages.split(","))]
    print(
        f"{'samples':>9}  {'warm RSS MiB':>12}" + "".join(f"  {st + ' RSS MiB':>16}  {st + '/s':>11}" for st in stages)
    )
    for size in (int(s) for s in args.sizes.split(",")):
        line = f"{size:>9,}"
        with tempfile.TemporaryDirectory() as tmp:
            for stage in stages:  # one process per stage: each peak RSS is that stage's own
                cmd = [sys.executable, __file__, "--child", str(size), "--stage", stage, "--work", tmp]
                cmd += ["--n", str(args.n), "--engine", args.engine, "--max-tokens", str(args.max_tokens)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode:
                    sys.exit(f"{stage} at {size} failed:\n{proc.stderr[-3000:]}")
                r = json.loads(proc.stdout.strip().splitlines()[-1])
                if stage == "generate":
                    line += f"  {r['warm']:>12}"
                line += f"  {r['rss']:>16}  {r['per_s']:>11}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
