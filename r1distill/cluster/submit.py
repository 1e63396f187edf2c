"""submit: run a stage on a Slurm cluster; the scripts are rendered from the recipe, written, then sbatch'ed.

    r1distill submit generate -c pipelines/big.yaml --shards 16 --partition gpu --gpus-per-node 1
    r1distill submit sft -c pipelines/big.yaml --nodes 4 --gpus-per-node 8 --dry-run

The settings come from the recipe's top-level `slurm:` section (`r1distill.cluster.slurm.SlurmConfig`); flags override
them, and KEY=VALUE overrides reach both that section and the stage inside the job. Each stage has a plan: a list of
batch jobs, each waiting (afterok) for the one it names. generate is an array of `--shard i/N` tasks plus a merge
job; sft/rl are one job with one `accelerate launch` per node. The scripts and the job ids go to RUN_DIR/slurm/.
Submitting again is safe: finished shards and stages see their manifests and do nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from r1distill.cluster.slurm import Job, SlurmConfig, SubmitError, header, preamble, q, sbatch, scancel, script, srun
from r1distill.core.config import Recipe, from_dict, load_recipe
from r1distill.core.registry import LAUNCHED, STAGES
from r1distill.core.stage import setup_logging
from r1distill.core.store import StageError, atomic_write_text


@dataclass
class Context:
    """Everything a plan needs to render its scripts."""

    stage: str
    recipe: Recipe
    recipe_path: Path  # absolute: the job may start anywhere
    overrides: list[str]
    slurm: SlurmConfig
    workdir: Path  # the job's working directory, so relative run_dir/paths resolve as they do here
    slurm_dir: Path  # RUN_DIR/slurm: scripts, logs, jobs.json
    shards: int | None

    @property
    def log_dir(self) -> Path:
        return self.workdir / self.slurm.log_dir if self.slurm.log_dir else self.slurm_dir / "logs"

    def job_name(self, suffix: str) -> str:
        return f"{self.recipe.name}-{suffix}"

    def stage_args(self, *extra: str) -> list[str]:
        """`-c RECIPE EXTRA... OVERRIDES...`, quoted; `extra` is shell text (it may hold expansions)."""
        return ["-c", q(self.recipe_path), *extra, *map(q, self.overrides)]


def plan_generate(ctx: Context) -> list[Job]:
    """An array of N shard tasks (one engine each) and a CPU-only merge that runs when all N succeeded."""
    from r1distill.generate.stage import GenerateConfig

    ctx.recipe.section("generate", GenerateConfig)  # a bad recipe fails here, not in N queued jobs
    n = ctx.slurm.nodes if ctx.shards is None else ctx.shards
    if n < 1:
        raise StageError(f"submit generate: --shards must be at least 1, got {n}")
    cfg, command = ctx.slurm, [q(ctx.slurm.python), "-m r1distill generate"]
    shard = f'--shard "${{SLURM_ARRAY_TASK_ID}}/{n}"'
    span = f"0-{n - 1}" + (f"%{cfg.max_running}" if cfg.max_running else "")
    array = header(cfg, ctx.job_name("generate"), ctx.log_dir / "%x-%A_%a.out", ctx.workdir, array=span)
    array_body = [*preamble(cfg), " ".join([*srun(cfg, ctx.workdir), *command, *ctx.stage_args(shard)])]
    merge = header(cfg, ctx.job_name("generate-merge"), ctx.log_dir / "%x-%j.out", ctx.workdir, gpus=False)
    merge_body = [
        *preamble(cfg),
        " ".join([*srun(cfg, ctx.workdir), *command, *ctx.stage_args(f"--merge-shards {n}")]),
    ]
    return [
        Job("generate-array", script(array, array_body)),
        Job("generate-merge", script(merge, merge_body), after="generate-array"),
    ]


def plan_launch(ctx: Context) -> list[Job]:
    """One job over `nodes` machines: one srun task per node runs `accelerate launch` with its machine rank.

    The first node of the allocation is the rendezvous host; SLURM_NODEID (set per task by srun) is the rank, so
    the rank expressions are expanded inside each task, not in the batch script.
    """
    cfg = ctx.slurm
    procs = cfg.processes_per_node or cfg.gpus_per_node or 1
    if ctx.shards is not None:
        raise StageError(f"submit {ctx.stage}: --shards is for generate; use --nodes for the number of machines")
    if cfg.nodes < 1:
        raise StageError(f"submit {ctx.stage}: --nodes must be at least 1, got {cfg.nodes}")
    section = ctx.recipe.data.get(ctx.stage) or {}
    launch = [
        q(cfg.python),
        "-m accelerate.commands.launch",
        # the ZeRO config itself comes from the recipe (`deepspeed:`) through the Trainer's arguments
        "--use_deepspeed" if section.get("deepspeed") else "--multi_gpu",
        '--num_machines "$SLURM_NNODES"',
        '--machine_rank "$SLURM_NODEID"',
        '--main_process_ip "$MAIN_PROCESS_IP"',
        '--main_process_port "$MAIN_PROCESS_PORT"',
        f'--num_processes "$((SLURM_NNODES * {procs}))"',
        f"--module {STAGES[ctx.stage]}",
        *ctx.stage_args(),
    ]
    body = [
        *preamble(cfg),
        'MAIN_PROCESS_IP="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"',
        f"export MAIN_PROCESS_IP MAIN_PROCESS_PORT={cfg.main_process_port}",
        " ".join([*srun(cfg, ctx.workdir), "bash", "-c", q(" ".join(launch))]),
    ]
    head = header(cfg, ctx.job_name(ctx.stage), ctx.log_dir / "%x-%j.out", ctx.workdir, nodes=cfg.nodes)
    return [Job(ctx.stage, script(head, body))]


PLANS: dict[str, Callable[[Context], list[Job]]] = {"generate": plan_generate, **dict.fromkeys(LAUNCHED, plan_launch)}

# flag -> (SlurmConfig field, type, help)
FLAGS = {
    "--partition": ("partition", str, "Slurm partition"),
    "--account": ("account", str, "Slurm account"),
    "--nodes": ("nodes", int, "machines per job (sft/rl); default shard count for generate"),
    "--gpus-per-node": ("gpus_per_node", int, "GPUs per node"),
    "--processes-per-node": ("processes_per_node", int, "sft/rl: training processes per node (default: GPUs)"),
    "--cpus-per-task": ("cpus_per_task", int, "CPUs per task"),
    "--mem": ("mem", str, "memory per node, as sbatch takes it (64G)"),
    "--time": ("time", str, "time limit, as sbatch takes it (4:00:00)"),
    "--image": ("container_image", str, "container image (pyxis: srun --container-image)"),
    "--python": ("python", str, "interpreter inside the job"),
}


def make_parser() -> argparse.ArgumentParser:
    """The submit command line; kept apart from `main` so tests and wrappers can build a Context from it."""
    p = argparse.ArgumentParser(prog="r1distill submit", description=(__doc__ or "").strip().splitlines()[0])
    p.add_argument("stage", choices=sorted(PLANS), help="the stage to run on the cluster")
    p.add_argument("--config", "-c", required=True, help="recipe YAML (its 'slurm:' section holds the job settings)")
    p.add_argument("--shards", type=int, help="generate: number of array tasks (default: --nodes)")
    for flag, (key, kind, text) in FLAGS.items():
        p.add_argument(flag, type=kind, dest=f"flag_{key}", metavar=key.upper(), help=f"{text} (overrides slurm.{key})")
    p.add_argument("--dry-run", action="store_true", help="print the scripts and the sbatch commands; submit nothing")
    p.add_argument("-v", "--verbose", action="store_true")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, passed on to the stage")
    return p


def context(args: argparse.Namespace) -> Context:
    """Load the recipe (with the overrides, so `slurm.*=...` works too) and its `slurm:` section under the flags."""
    recipe_path = Path(args.config).resolve()
    recipe = load_recipe(recipe_path, args.overrides)
    raw = recipe.data.get("slurm") or {}
    if not isinstance(raw, dict):
        raise StageError(f"{recipe.where}: section 'slurm' must be a mapping")
    cfg = from_dict(SlurmConfig, raw, f"{recipe.where}: slurm")
    flags = {key: getattr(args, f"flag_{key}") for key, _, _ in FLAGS.values()}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in flags.items() if v is not None})
    workdir = Path.cwd()
    return Context(
        stage=args.stage,
        recipe=recipe,
        recipe_path=recipe_path,
        overrides=list(args.overrides),
        slurm=cfg,
        workdir=workdir,
        slurm_dir=workdir / recipe.run_dir / "slurm",
        shards=args.shards,
    )


def submit(ctx: Context, jobs: list[Job]) -> dict:
    """Write every script atomically, sbatch them in order (each after the job it names), record the ids.

    If a later sbatch fails, the jobs already submitted are cancelled: no half-submitted plan is left queued.
    Returns this submission's record, stored under its stage in RUN_DIR/slurm/jobs.json (other stages' kept).
    """
    ctx.log_dir.mkdir(parents=True, exist_ok=True)  # sbatch does not create the --output folder
    ids: dict[str, str] = {}
    records = []
    for job in jobs:
        path = ctx.slurm_dir / f"{job.name}.sbatch"
        atomic_write_text(path, job.script)
        try:
            ids[job.name] = sbatch(path, ctx.slurm, after=ids[job.after] if job.after else None)
        except SubmitError:
            scancel(list(ids.values()))
            raise
        records.append({"name": job.name, "id": ids[job.name], "script": str(path), "after": job.after})
    result = {
        "stage": ctx.stage,
        "recipe": str(ctx.recipe_path),
        "overrides": ctx.overrides,
        "submitted": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "log_dir": str(ctx.log_dir),
        "jobs": records,
    }
    path = ctx.slurm_dir / "jobs.json"
    try:
        recorded = json.loads(path.read_text()) if path.exists() else {}
    except json.JSONDecodeError:
        recorded = {}  # an unreadable record of earlier jobs must not fail a submission that already happened
    atomic_write_text(path, json.dumps({**recorded, ctx.stage: result}, indent=2) + "\n")
    return result


def dry_run(ctx: Context, jobs: list[Job]) -> str:
    """The scripts and the exact sbatch commands a real submission would run, as one text."""
    out = []
    for job in jobs:
        path = ctx.slurm_dir / f"{job.name}.sbatch"
        dep = f" --dependency=afterok:<{job.after} job id> --kill-on-invalid-dep=yes" if job.after else ""
        out += [f"# ===== {path}", f"# sbatch --parsable{dep} {shlex.quote(str(path))}", job.script]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_intermixed_args(argv)
    setup_logging(args.verbose)
    try:
        ctx = context(args)
        jobs = PLANS[args.stage](ctx)
        if args.dry_run:
            print(dry_run(ctx, jobs), end="")
            return 0
        result = submit(ctx, jobs)
    except StageError as e:
        print(f"r1distill submit: error: {e}", file=sys.stderr)
        return 2
    for job in result["jobs"]:
        after = f" (after {job['after']})" if job["after"] else ""
        print(f"{job['name']}: job {job['id']}{after}")
    ids = ",".join(job["id"] for job in result["jobs"])
    print(f"watch: squeue -j {ids}   (scontrol show job ID for details; logs in {result['log_dir']})")
    print(f"job ids recorded in {ctx.slurm_dir / 'jobs.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
