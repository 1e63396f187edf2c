"""Slurm batch scripts from a recipe's `slurm:` section, and `sbatch` / `scontrol` around them.

Rendering is pure (text in, text out) so every script can be shown with `--dry-run` and tested without a cluster.
Nothing about a particular cluster lives in the repo: partition, account, container image, mounts, environment and
setup lines all come from the recipe (or `r1distill submit` flags). Every value is shell-quoted; the scripts parse
no arguments of their own.
"""

from __future__ import annotations

import logging
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from r1distill.core.store import StageError

log = logging.getLogger(__name__)


class SubmitError(StageError):
    """sbatch is missing or refused a job; the message names the script and the settings it was given."""


@dataclass
class SlurmConfig:
    """The recipe's top-level `slurm:` section; `r1distill submit` flags override each field."""

    partition: str | None = None
    account: str | None = None
    nodes: int = 1  # machines per job (sft/rl); for generate, the default number of shards
    gpus_per_node: int | None = None
    processes_per_node: int | None = None  # sft/rl training processes per node; default: gpus_per_node (or 1)
    cpus_per_task: int | None = None
    mem: str | None = None  # as sbatch takes it: 64G, 0 (all of the node's memory)
    time: str | None = None  # as sbatch takes it: 4:00:00, 2-00:00:00
    container_image: str | None = None  # pyxis/enroot: srun --container-image
    container_mounts: list[str] = field(default_factory=list)  # "SRC:DST" entries
    env: dict[str, str] = field(default_factory=dict)  # exported before the job's command
    setup: list[str] = field(default_factory=list)  # shell lines run first (module load, source venv/bin/activate)
    log_dir: str | None = None  # default: RUN_DIR/slurm/logs
    extra_sbatch: list[str] = field(default_factory=list)  # raw "#SBATCH ..." lines (qos, constraint, exclusive)
    max_running: int | None = None  # generate: at most this many array tasks at once (--array=0-N%K)
    python: str = "python"  # the interpreter inside the job (or container)
    main_process_port: int = 29500  # accelerate's rendezvous port for multi-node sft/rl


@dataclass
class Job:
    """One batch script of a submission; `after` names an earlier job of the plan it must wait for (afterok)."""

    name: str
    script: str
    after: str | None = None


_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def q(value: object) -> str:
    return shlex.quote(str(value))


def header(
    cfg: SlurmConfig,
    job_name: str,
    log_path: Path,
    workdir: Path,
    *,
    nodes: int = 1,
    array: str | None = None,
    gpus: bool = True,
    cpus_per_task: int | None = None,
) -> list[str]:
    """The `#SBATCH` lines of one job. `gpus=False` for CPU-only helpers (a merge) that should not hold a GPU."""
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={q(job_name)}",
        f"#SBATCH --output={q(log_path)}",
        f"#SBATCH --chdir={q(workdir)}",
        f"#SBATCH --nodes={nodes}",
        "#SBATCH --ntasks-per-node=1",
    ]
    if array:
        lines.append(f"#SBATCH --array={array}")
    if cfg.partition:
        lines.append(f"#SBATCH --partition={q(cfg.partition)}")
    if cfg.account:
        lines.append(f"#SBATCH --account={q(cfg.account)}")
    if gpus and cfg.gpus_per_node:
        lines.append(f"#SBATCH --gpus-per-node={cfg.gpus_per_node}")
    cpus = cpus_per_task or cfg.cpus_per_task
    if cpus:
        lines.append(f"#SBATCH --cpus-per-task={cpus}")
    if cfg.mem:
        lines.append(f"#SBATCH --mem={q(cfg.mem)}")
    if cfg.time:
        lines.append(f"#SBATCH --time={q(cfg.time)}")
    for extra in cfg.extra_sbatch:
        lines.append(extra if extra.startswith("#SBATCH") else f"#SBATCH {extra}")
    return lines


def preamble(cfg: SlurmConfig) -> list[str]:
    """Shell lines before the command: fail fast, the recipe's environment, then its setup lines (as written)."""
    lines = ["set -eo pipefail"]  # no -u: many activate scripts (conda, modules) read unset variables
    for key, value in cfg.env.items():
        if not _ENV_KEY.match(key):
            raise StageError(f"slurm.env: {key!r} is not a valid environment variable name")
        lines.append(f"export {key}={q(value)}")
    lines += list(cfg.setup)
    return lines


def srun(cfg: SlurmConfig, workdir: Path, *, ntasks_per_node: int = 1) -> list[str]:
    """The `srun` words that start one task per node, inside the container when the recipe names one."""
    words = ["srun", f"--ntasks-per-node={ntasks_per_node}", "--kill-on-bad-exit=1"]
    if cfg.container_image:
        words.append(f"--container-image={q(cfg.container_image)}")
        words.append(f"--container-workdir={q(workdir)}")
        if cfg.container_mounts:
            words.append(f"--container-mounts={q(','.join(cfg.container_mounts))}")
    return words


def script(header_lines: list[str], body: list[str]) -> str:
    return "\n".join([*header_lines, "", *body]) + "\n"


def sbatch(path: Path, cfg: SlurmConfig, after: str | None = None) -> str:
    """Submit one script with `sbatch --parsable`; returns the job id (an array job's id for an array)."""
    exe = shutil.which("sbatch")
    if exe is None:
        raise SubmitError("sbatch not found on PATH: run this on a Slurm login node (or use --dry-run)")
    cmd = [exe, "--parsable"]
    if after:
        cmd += [f"--dependency=afterok:{after}", "--kill-on-invalid-dep=yes"]
    cmd.append(str(path))
    log.debug("running %s", shlex.join(cmd))
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        why = (result.stderr.strip().splitlines() or ["(no message)"])[-1].removeprefix("sbatch: error: ")
        raise SubmitError(
            f"sbatch refused {path.name} (partition {cfg.partition or '<cluster default>'!r}, "
            f"account {cfg.account or '<default>'!r}): {why}"
        )
    job_id = result.stdout.strip().split(";")[0]  # "ID" or "ID;CLUSTER" on federated clusters
    if not job_id.isdigit():
        raise SubmitError(f"sbatch {path.name}: unexpected output {result.stdout.strip()!r}")
    return job_id


def scancel(job_ids: list[str]) -> None:
    if job_ids and shutil.which("scancel"):
        subprocess.run(["scancel", *job_ids], capture_output=True, timeout=60)


def job_states(job_id: str) -> list[str]:
    """The JobState of every task of a job (one per array task) from `scontrol show job`; [] once Slurm forgot it.

    Works without accounting (sacct needs slurmdbd, which many small clusters and CI lack).
    """
    result = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        return []
    return re.findall(r"\bJobState=(\S+)", result.stdout)
