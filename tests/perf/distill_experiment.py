"""Which distillation method makes the better student? Every method from the same start, on a laptop CPU (issue 20).

    .venv/bin/python tests/perf/distill_experiment.py                    every arm not yet cached, then the table
    .venv/bin/python tests/perf/distill_experiment.py --arms data,sft_kd  only these (their `after` arms first)
    .venv/bin/python tests/perf/distill_experiment.py --table            only rebuild the table from cached arms

Recipe: pipelines/laptop-distill.yaml. Teacher: the bundled SmolLM2-135M-Instruct. Student: the teacher with every
other layer kept (`r1distill.core.models.build_pruned_student`, 15 of 30 layers), which starts measurably worse.
The teacher's traces on 384 training problems (generate -> verify -> filter -> build, with top-20 logprobs) are made
once; then each arm is stage commands on that recipe (train, evaluate, KL), the whole arm one chunk under
`flock /tmp/r1d-heavy.lock` so heavy jobs on a shared machine take turns between chunks. Arms are evaluated on
held-out problems (`arith256`, seed 1000; problems that also occur in a training source are left out of the
comparison) and scored by KL to the teacher. Every arm's figures are cached in RUN_DIR/arms/<arm>/result.json; the
table is rebuilt from all cached arms.

Adding an arm is one `ARMS` entry: the stage, the arm it starts from (None: the pruned student) and overrides.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

RECIPE = ROOT / "pipelines" / "laptop-distill.yaml"
LOCK = "/tmp/r1d-heavy.lock"
BENCH = "arith256"


@dataclass(frozen=True)
class Arm:
    """One method: `stage` trains the model of arm `start` (None: the untrained pruned student) with `overrides`
    (dotted recipe keys). `stage` None is the untrained student itself, evaluated as the baseline."""

    label: str
    stage: str | None = None
    start: str | None = None
    overrides: tuple[str, ...] = field(default_factory=tuple)


ARMS = {
    "init": Arm("untrained pruned student (the start)"),
    "data": Arm("data distillation: sft on verified teacher traces", "sft"),
    "sft_kd": Arm(
        "sft + soft labels (top-20, alpha 0.5)",
        "sft",
        overrides=("sft.kd.source=offline", "sft.kd.alpha=0.5", "sft.kd.temperature=1.0", "sft.kd.top_k_mode=tail"),
    ),
    "sft_kd_hidden": Arm(
        "sft + soft labels + hidden states (cosine, every layer)",
        "sft",
        overrides=(
            "sft.kd.source=offline",
            "sft.kd.alpha=0.5",
            "sft.kd.temperature=1.0",
            "sft.kd.top_k_mode=tail",
            "sft.kd.teacher=bundled:smollm2",
            "sft.kd.hidden={weight: 1.0, loss: cosine}",
        ),
    ),
    "sft_distill": Arm("sft -> on-policy distillation (reverse KL)", "distill", start="data"),
    "sft_grpo": Arm("sft -> GRPO (accuracy + format rewards)", "rl", start="data"),
}
DATA_STAGES = ("generate", "verify", "filter", "build")
TRAINED_N = 2


def env() -> dict[str, str]:
    defaults = {"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_NO_USAGE_STATS": "1", "HF_HUB_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    return {**defaults, **os.environ, "PYTHONPATH": str(ROOT)}


def timed(cmd: list[str]) -> float:
    """Run one command; its wall time. A failure stops the experiment with the command's last output."""
    print("+", " ".join(cmd), flush=True)
    t0 = time.monotonic()
    out = subprocess.run(cmd, env=env(), capture_output=True, text=True)
    if out.returncode != 0:
        sys.stderr.write((out.stderr or "")[-4000:])
        raise SystemExit(f"failed ({out.returncode}): {' '.join(cmd)}")
    return time.monotonic() - t0


def locked(args: list[str]) -> None:
    """Run this script again with `args` under the shared heavy-job lock: one chunk (the data, or one arm) at a
    time, so jobs of other users of the machine interleave between chunks rather than inside one."""
    cmd = ["flock", LOCK, sys.executable, __file__, *args, "--no-lock"]
    print("+", " ".join(cmd), flush=True)
    if subprocess.run(cmd, env=env()).returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}")


def stage_cmd(stage: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "r1distill", stage, "-c", str(RECIPE), *args]


def run_dir() -> Path:
    from r1distill.core.config import load_recipe

    return load_recipe(RECIPE).run_dir


def model_of(arm: str, rd: Path) -> Path:
    return rd / "student" if ARMS[arm].stage is None else rd / "arms" / arm / "model"


def prepare(rd: Path) -> dict[str, float]:
    """The pruned student and the teacher's data (once; finished stages are skipped by the stages themselves)."""
    times = {}
    if not (rd / "student" / "config.json").exists():
        code = f"from r1distill.core.models import build_pruned_student as b; b('bundled:smollm2', '{rd / 'student'}')"
        times["student"] = timed([sys.executable, "-c", code])
    for stage in DATA_STAGES:
        times[stage] = timed(stage_cmd(stage))
    return times


def run_arm(name: str, rd: Path) -> dict:
    """Train (unless the arm is the start), evaluate, measure KL; cache and return the arm's figures."""
    arm, folder = ARMS[name], rd / "arms" / name
    folder.mkdir(parents=True, exist_ok=True)
    model, start = model_of(name, rd), model_of(arm.start, rd) if arm.start else rd / "student"
    train_s = 0.0
    if arm.stage:
        inp = rd / "build" if arm.stage == "sft" else start
        train_s = timed(stage_cmd(arm.stage, "--input", str(inp), "--output", str(model),
                                  f"{arm.stage}.model={start}", *arm.overrides))  # fmt: skip
    # the start (and the teacher) with the recipe's n; trained arms with TRAINED_N samples per problem, to fit the
    # laptop budget (pass@1 per problem is unbiased for any n, so the paired delta stays fair; its CI gets wider)
    extra = ["evaluate.baselines.teacher=bundled:smollm2"] if name == "init" else [f"evaluate.n={TRAINED_N}"]
    eval_s = timed(stage_cmd("evaluate", "--output", str(folder / "eval"), f"evaluate.model={model}", *extra))
    kl_s = timed([sys.executable, __file__, "--kl", str(model), "--out", str(folder / "kl.json")])
    result = {
        "arm": name,
        "label": arm.label,
        "train_s": round(train_s, 1),
        "eval_s": round(eval_s, 1),
        "kl_s": round(kl_s, 1),
        "scores": per_problem(folder / "eval" / BENCH / "scored.jsonl"),
        **json.loads((folder / "kl.json").read_text()),
    }
    if name == "init":
        result["teacher_scores"] = per_problem(folder / "eval" / "baselines" / "teacher" / BENCH / "scored.jsonl")
    if arm.stage:
        manifest = json.loads((model / "manifest.json").read_text())
        keys = ("steps", "wall_s", "train_loss", "first_loss", "loss_first", "loss_last", "reward_first", "reward_last")
        result["train_manifest"] = {k: manifest.get(k) for k in keys}
    (folder / "result.json").write_text(json.dumps(result, indent=1))
    return result


def per_problem(scored: Path) -> dict[str, float]:
    """Problem id -> share of its samples graded correct."""
    by = {}
    for line in scored.read_text().splitlines():
        r = json.loads(line)
        by.setdefault(r["row"], []).append(bool(r["grade"]["correct"]))
    return {k: sum(v) / len(v) for k, v in by.items()}


def held_out_ids() -> list[str]:
    """The ids of the benchmark's rows (in its order) whose problem text occurs in no training source of the recipe
    (generate, distill, rl)."""
    from r1distill.core.config import load_recipe
    from r1distill.evaluate import benchmarks
    from r1distill.generate.problems import arithmetic

    data = load_recipe(RECIPE).data
    seen = set()
    for stage in ("generate", "distill", "rl"):
        for src in data[stage]["sources"]:
            seen |= {r["problem"] for r in arithmetic(src["count"], src["seed"])}
    bench = benchmarks.get(BENCH)
    rows = [bench.convert(i, raw) for i, raw in enumerate(bench.builtin())]
    return [str(r["id"]).replace("/", "_") for r in rows if r["problem"] not in seen]


def paired_delta(a: dict[str, float], b: dict[str, float], ids: list[str]) -> tuple:
    """Mean over the problems `ids` of a - b and its 95% paired-bootstrap interval (problems resampled, seeded):
    r1distill.evaluate.metrics.paired_delta, the same the evaluate report prints."""
    from r1distill.evaluate.metrics import paired_delta as paired

    d = paired({i: a[i] for i in ids}, {i: b[i] for i in ids}, method="bootstrap")
    return d["delta"], *d["ci95"]


def kl_main(model: str, out: str, limit: int = 16) -> None:
    """KL to the teacher on held-out prompts, two ways, per completion token over the full vocabulary:
    forward KL(teacher || student) on the teacher's own samples (what sft and soft labels fit), and reverse
    KL(student || teacher) on the student's own evaluation samples (what on-policy distillation minimises)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from r1distill.core.models import default_teacher
    from r1distill.core.store import iter_records
    from r1distill.generate.engines.base import Request, render_text
    from r1distill.train.kd.loss import full_kl

    torch.set_num_threads(2)
    rd = run_dir()
    tok = AutoTokenizer.from_pretrained(default_teacher())
    teacher = AutoModelForCausalLM.from_pretrained(default_teacher(), dtype=torch.float32).eval()
    student = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32).eval()
    order = {rid: n for n, rid in enumerate(held_out_ids())}

    def kl_by_prompt(records, reverse: bool) -> dict[str, float]:
        """Problem id -> mean per-token KL over the completion of its (one) sequence."""
        by = {}
        for rec in records:
            prompt = render_text(tok, Request("", rec["messages"], prefill="<think>\n"))
            text = prompt + rec["completion"].removeprefix("<think>\n")
            ids = tok(text, add_special_tokens=False, return_tensors="pt").input_ids[:, :512]
            start = len(tok(prompt, add_special_tokens=False).input_ids)
            with torch.no_grad():
                z_s = student(ids).logits[0, start - 1 : -1].float()
                z_t = teacher(ids).logits[0, start - 1 : -1].float()
            kl = full_kl(z_t, z_s) if reverse else full_kl(z_s, z_t)  # full_kl(student, teacher) = KL(t || s)
            by[rec["row"]] = kl.mean().item()
        return by

    def pick(folder: Path) -> list[dict]:
        recs = [r for r in iter_records(folder) if r["k"] == 0 and r["row"] in order]
        return sorted(recs, key=lambda r: order[r["row"]])[:limit]

    teacher_samples = pick(rd / "arms" / "init" / "eval" / "baselines" / "teacher" / BENCH / "samples")
    own = Path(out).parent / "eval" / BENCH / "samples"
    fwd, rev = kl_by_prompt(teacher_samples, reverse=False), kl_by_prompt(pick(own), True)
    result = {
        "kl_teacher_text": sum(fwd.values()) / max(len(fwd), 1),
        "kl_own_samples": sum(rev.values()) / max(len(rev), 1),
        "kl_teacher_text_by_problem": fwd,
        "kl_own_samples_by_problem": rev,
    }
    Path(out).write_text(json.dumps(result))


def kl_delta(r: dict, init: dict, key: str) -> str:
    """Paired Δ of an arm's KL against the start's over the same held-out prompts, with its bootstrap CI."""
    a, b = r.get(key + "_by_problem"), init.get(key + "_by_problem")
    if not a or not b or r is init:
        return ""
    from r1distill.evaluate.metrics import paired_delta as paired

    d = paired(a, b, method="bootstrap")
    lo, hi = d["ci95"]
    return f" ({d['delta']:+.2f} [{lo:+.2f}, {hi:+.2f}]{' **' if lo > 0 or hi < 0 else ''})"


def table(rd: Path) -> str:
    """The markdown table from every cached arm: pass@1 and its paired delta against the start, KL, wall time."""
    results = {}
    for p in sorted((rd / "arms").glob("*/result.json")):  # kl.json: the newest KL pass (it can be redone alone)
        kl = p.with_name("kl.json")
        results[p.parent.name] = {**json.loads(p.read_text()), **(json.loads(kl.read_text()) if kl.exists() else {})}
    if "init" not in results:
        return "no cached `init` arm yet: run it first (the start every arm is compared with)"
    init = results["init"]
    ids = [i for i in held_out_ids() if i in init["scores"]]
    prep = json.loads((rd / "arms" / "prepare.json").read_text()) if (rd / "arms" / "prepare.json").exists() else {}
    lines = [
        f"{len(ids)} held-out problems (`{BENCH}`, seed 1000, none in a training source); samples per problem: the "
        f"recipe's evaluate.n for the start and the teacher, {TRAINED_N} for trained arms. Δ = paired difference in "
        "pass@1 against the untrained student, 95% paired-bootstrap CI over problems. KL: nats per completion token "
        "on 16 held-out prompts, in brackets the paired Δ against the start's over the same prompts, with its CI.",
        "",
        "| arm | pass@1 | Δ vs start [95% CI] | KL(t‖s) teacher text | KL(s‖t) own samples | train wall |",
        "|---|---|---|---|---|---|",
    ]
    teacher = init.get("teacher_scores") or {}
    if teacher:
        tp = sum(teacher[i] for i in ids) / len(ids)
        d, lo, hi = paired_delta(teacher, init["scores"], ids)
        lines.append(f"| teacher (SmolLM2-135M, 30 layers) | {tp:.3f} | {d:+.3f} [{lo:+.3f}, {hi:+.3f}] | 0 | 0 | - |")
    order = [a for a in ARMS if a in results] + [a for a in results if a not in ARMS]
    for name in order:
        r = results[name]
        p = sum(r["scores"].get(i, 0.0) for i in ids) / len(ids)
        if name == "init":
            delta = "-"
        else:
            d, lo, hi = paired_delta(r["scores"], init["scores"], ids)
            delta = f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" + (" **" if lo > 0 or hi < 0 else "")
        wall = f"{r['train_s']:.0f} s" if r.get("train_s") else "-"
        start = ARMS[name].start if name in ARMS else None
        if start and start in results:
            wall += f" (+{results[start]['train_s']:.0f} s {start})"
        fwd, rev = (f"{r[k]:.3f}{kl_delta(r, init, k)}" for k in ("kl_teacher_text", "kl_own_samples"))
        lines.append(f"| {name}: {r['label']} | {p:.3f} | {delta} | {fwd} | {rev} | {wall} |")
    if prep:
        lines += ["", "Teacher data, once for all arms: " + ", ".join(f"{k} {v:.0f} s" for k, v in prep.items())
                  + ". ** = the CI excludes zero."]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arms", default=None, help=f"comma-separated, of {', '.join(ARMS)} (default: all not cached)")
    p.add_argument("--table", action="store_true", help="only rebuild the table from the cached arms")
    p.add_argument("--no-lock", action="store_true", help=f"do not take {LOCK} around each chunk")
    p.add_argument("--rerun", action="store_true", help="rerun the named arms even if they are cached")
    p.add_argument("--only", action="store_true", help=argparse.SUPPRESS)  # internal: this chunk, no dependencies
    p.add_argument("--kl", default=None, help=argparse.SUPPRESS)
    p.add_argument("--out", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.kl:
        kl_main(a.kl, a.out)
        return
    rd = run_dir()
    prep_file = rd / "arms" / "prepare.json"
    if a.only:  # one chunk, already under the lock when run by `locked`
        if a.arms == "prepare":
            prep_file.parent.mkdir(parents=True, exist_ok=True)
            prep_file.write_text(json.dumps(prepare(rd)))
        else:
            t0 = time.monotonic()
            r = run_arm(a.arms, rd)
            print(f"{a.arms}: train {r['train_s']} s, eval {r['eval_s']} s, kl {r['kl_s']} s "
                  f"({time.monotonic() - t0:.0f} s)", flush=True)  # fmt: skip
        return
    if not a.table:
        wanted = a.arms.split(",") if a.arms else list(ARMS)
        for name in wanted:
            if name not in ARMS:
                raise SystemExit(f"--arms: unknown arm {name!r}; known: {', '.join(ARMS)}")
        # an arm's start, and the init arm (the teacher's held-out samples, for KL), come first
        todo: list[str] = []
        for name in ["init", *wanted]:
            chain = []
            while name and name not in todo and name not in chain:
                chain.insert(0, name)
                name = ARMS[name].start
            todo += [n for n in chain if n not in todo]
        chunks = [] if prep_file.exists() else ["prepare"]
        chunks += [n for n in todo if not (rd / "arms" / n / "result.json").exists() or (a.rerun and n in wanted)]
        for chunk in chunks:
            args = ["--arms", chunk, "--only"]
            if a.no_lock:
                subprocess.run([sys.executable, __file__, *args, "--no-lock"], env=env(), check=True)
            else:
                locked(args)
    text = table(rd)
    print(text)
    (rd / "arms" / "table.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
