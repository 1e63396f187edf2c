"""A real single-node Slurm on localhost for tests (the INFRA.md recipe): munged, slurmctld, slurmd, no accounting.

`start()` needs root and the Debian `slurm-wlm` + `munge` packages (`tests/setup_system.sh` installs them on CI);
it returns None with the reason when it cannot run here. A controller that already answers is reused and left
running; one this module started is shut down by `stop()`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CONF = Path("/etc/slurm/slurm.conf")
MUNGE_PID = Path("/run/munge/munged.pid")
PARTITION = "debug"

MARK = "# written by r1distill tests/slurm_cluster.py"
SETTINGS = f"""\
{MARK}
ClusterName=local
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs={{cpus}} RealMemory={{mem_mb}} State=UNKNOWN
PartitionName={{partition}} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class Cluster:
    partition: str
    cpus: int
    started: bool  # False: an already-running controller was reused and is left alone
    started_munge: bool = False


def why_unavailable() -> str | None:
    """The reason a local cluster cannot be started here, or None."""
    if os.geteuid() != 0:
        return "starting slurmctld/slurmd/munged needs root"
    missing = [b for b in ("sbatch", "scontrol", "slurmctld", "slurmd", "munged") if not _which(b)]
    if missing:
        return f"slurm-wlm/munge not installed (missing {', '.join(missing)}); tests/setup_system.sh installs them"
    if CONF.exists() and MARK not in CONF.read_text() and not _controller_up():
        return f"{CONF} belongs to another Slurm set-up whose controller is down; not overwriting it"
    return None


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=30)


def _controller_up() -> bool:
    if not CONF.exists():
        return False
    result = _run("scontrol", "ping", check=False)
    return result.returncode == 0 and "UP" in result.stdout


def _alive(pidfile: Path) -> bool:
    pid = _pid(pidfile)
    return pid is not None and _running(pid)


def _mem_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024 * 8 // 10  # below the real total, or slurmd drains the node
    return 4000


def _wait_idle(timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = _run("sinfo", "-h", "-o", "%T", check=False).stdout.split()
        if "idle" in states or "mixed" in states or "allocated" in states:
            return
        time.sleep(0.2)
    log = Path("/var/log/slurm/slurmd.log")
    tail = log.read_text()[-2000:] if log.exists() else ""
    raise RuntimeError(f"the local Slurm node never became idle in {timeout:.0f} s; slurmd.log ends:\n{tail}")


def start(timeout: float = 60) -> Cluster:
    """Start munged, slurmctld and slurmd (or reuse a running controller) and wait for the node to be idle."""
    cpus = os.cpu_count() or 1
    if _controller_up():
        _wait_idle(timeout)
        partitions = _run("sinfo", "-h", "-o", "%P").stdout.split()
        default = next((p.rstrip("*") for p in partitions if p.endswith("*")), partitions[0].rstrip("*"))
        return Cluster(default, cpus, started=False)
    munge_dir = MUNGE_PID.parent
    munge_dir.mkdir(parents=True, exist_ok=True)
    shutil.chown(munge_dir, "munge", "munge")
    munge_dir.chmod(0o755)
    started_munge = not _alive(MUNGE_PID)
    if started_munge:
        _run("runuser", "-u", "munge", "--", _which("munged") or "munged")
    for folder in ("/var/spool/slurmctld", "/var/spool/slurmd", "/var/log/slurm"):
        Path(folder).mkdir(parents=True, exist_ok=True)
    CONF.parent.mkdir(parents=True, exist_ok=True)
    CONF.write_text(SETTINGS.format(cpus=cpus, mem_mb=_mem_mb(), partition=PARTITION))
    _run(_which("slurmctld") or "slurmctld", "-i")
    _run(_which("slurmd") or "slurmd", "-N", "localhost")
    _wait_idle(timeout)
    return Cluster(PARTITION, cpus, started=True, started_munge=started_munge)


def _pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def _running(pid: int) -> bool:
    """True while the process exists and is not a zombie (daemons here may be reparented to a non-reaping init)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def stop(cluster: Cluster, timeout: float = 30) -> None:
    """Shut down what `start` started: cancel leftover jobs, stop the daemons and wait for them to exit, then munged
    (if it started it; slurmd still talks to munged while it shuts down)."""
    if not cluster.started:
        return
    daemons = [pid for pid in map(_pid, (Path("/run/slurmctld.pid"), Path("/run/slurmd.pid"))) if pid]
    _run("scancel", "--user", "root", check=False)
    _run("scontrol", "shutdown", check=False)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(map(_running, daemons)):
        time.sleep(0.2)
    for pid in filter(_running, daemons):  # did not stop in time: do not leave them behind
        os.kill(pid, signal.SIGKILL)
    munged = _pid(MUNGE_PID)
    if cluster.started_munge and munged and _running(munged):
        os.kill(munged, signal.SIGTERM)


TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL"}


def wait(job_ids: list[str], timeout: float, until: set[str] = TERMINAL) -> dict[str, list[str]]:
    """Poll `scontrol show job` until every task of every job is in a state of `until`; returns the states.
    Past `timeout` the jobs are cancelled and the test fails with their states."""
    import pytest

    from r1distill.cluster.slurm import job_states, scancel

    deadline = time.monotonic() + timeout
    while True:
        states = {j: job_states(j) for j in job_ids}
        if all(s and set(s) <= until for s in states.values()):
            return states
        if time.monotonic() > deadline:
            scancel(job_ids)
            pytest.fail(f"jobs not in {sorted(until)} after {timeout:.0f} s: {states}")
        time.sleep(1)
