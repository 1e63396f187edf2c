"""Run untrusted Python (model-written programs) contained: the code grader's only way to execute anything.

Each run gets its own process group, a private working directory, wall and CPU time limits, an address-space
limit, a cap on output and file size, a process-count limit, no network, and no view of the project or home
directories. Every process it starts is killed when it ends or times out. The strongest available isolation is
chosen once per process (`isolation_level()`) and recorded with every result:

- `bwrap+uid`: as root, drop to an unprivileged uid of its own (`setpriv`, see `SANDBOX_UIDS`), set rlimits
  (`prlimit`), then bubblewrap with all namespaces unshared (no network, own PID namespace, only `/usr` visible
  read-only, tmpfs work dir). The uid drop is what makes `RLIMIT_NPROC` hold against a fork bomb (the kernel
  exempts uid 0).
- `bwrap`: the same without the uid drop, for a non-root user (who already is unprivileged).
- `uid`: root without usable bubblewrap: uid drop + rlimits; world-readable files stay visible, network open.
- `rlimit`: rlimits + own session only. Weak: use it for trusted code or on a throwaway machine.

Untrusted code runs only at a bubblewrap level unless a weaker one is named: where bubblewrap is unusable,
`run_python(level=None)` raises `SandboxRefused` (one line: how to install bubblewrap, or how to accept the weaker
level with `verify.code.isolation: uid`) instead of running with the network open and the host's /tmp writable.

The interpreter is `/usr/bin/python3` (stdlib only): the unprivileged uid must be able to read it, which a venv
python under `/root` is not.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from r1distill.core.store import StageError

log = logging.getLogger(__name__)

LEVELS = ("bwrap+uid", "bwrap", "uid", "rlimit")
STRONG_LEVELS = ("bwrap+uid", "bwrap")  # what runs by default; the others only when named
# The system interpreter, readable by the unprivileged uid; where there is none, our own (fine for a non-root user).
DEFAULT_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
# Each concurrent run gets its own unprivileged uid, claimed with a lock file, so that one program's fork bomb cannot
# use up another's process limit and the after-run sweep (`kill -1` as that uid) kills everything the run left, even
# a daemon that escaped its session, without touching other runs. The uids are a dedicated range with no passwd
# entry rather than 65534 ("nobody"): real services run as nobody, and the sweep must never reach them.
SANDBOX_UID_BASE = int(os.environ.get("R1DISTILL_SANDBOX_UID_BASE", "1999990000"))
SANDBOX_UIDS = range(SANDBOX_UID_BASE, SANDBOX_UID_BASE + 64)
_UID_LOCKS = Path(tempfile.gettempdir()) / "r1distill-sandbox-uids"
_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONIOENCODING": "utf-8", "HOME": "/work"}


class SandboxRefused(StageError):
    """Bubblewrap is unusable here and no weaker level was named: untrusted code is not run."""


@dataclass(frozen=True)
class Limits:
    """Per-run limits. `timeout_s` is the program's CPU time (RLIMIT_CPU, whole seconds) and, times
    `wall_factor` plus a second, its wall-clock time: judged by CPU time, a program is not failed for sharing the
    cores with other runs, and a program that sleeps or blocks is still stopped. `output_bytes` caps stdout, stderr
    and any file the program writes; `nproc` its processes; `disk_mb` its tmpfs work dir."""

    timeout_s: float = 10.0
    memory_mb: int = 512
    output_bytes: int = 8 << 20
    nproc: int = 64
    disk_mb: int = 64
    wall_factor: float = 2.0

    @property
    def wall_s(self) -> float:
        return self.timeout_s * self.wall_factor + 1.0


@dataclass
class RunResult:
    """What one sandboxed run did. `status`: `ok` (exit 0), `runtime_error` (other exit or signal), `timeout` (wall
    or CPU limit), `memory_limit` (a MemoryError), `output_limit` (stdout/stderr reached the cap) or `sandbox_error`
    (the sandbox itself failed to start, after retries)."""

    status: str
    returncode: int | None
    stdout: str
    stderr: str
    wall_s: float
    isolation: str


def _bwrap_args(workdir_mb: int) -> list[str]:
    return [
        _tool("bwrap"), "--unshare-all", "--die-with-parent", "--new-session",
        "--ro-bind", "/usr", "/usr", "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/bin", "/bin", "--proc", "/proc", "--dev", "/dev",
        "--size", str(workdir_mb << 20), "--tmpfs", "/tmp",
        "--size", str(workdir_mb << 20), "--tmpfs", "/work",
    ]  # fmt: skip


def _prlimit_args(limits: Limits) -> list[str]:
    cpu = max(1, math.ceil(limits.timeout_s))  # soft: SIGXCPU (-> "timeout"); hard, a second later: SIGKILL
    mem = limits.memory_mb << 20
    return [
        _tool("prlimit"), f"--nproc={limits.nproc}", f"--as={mem}", f"--cpu={cpu}:{cpu + 1}",
        f"--fsize={limits.output_bytes}", "--nofile=256", "--core=0",
    ]  # fmt: skip


@contextlib.contextmanager
def _uid_slot(level: str) -> Iterator[int | None]:
    """A sandbox uid no other run (in any process) is using, held for one run; None when `level` keeps our uid."""
    if "uid" not in level:
        yield None
        return
    _UID_LOCKS.mkdir(mode=0o700, exist_ok=True)  # root-only: sandboxed uids must not grab the locks
    while True:
        for uid in SANDBOX_UIDS:
            lock = open(_UID_LOCKS / str(uid), "w")
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.close()
                continue
            try:
                yield uid
            finally:
                _sweep(uid)
                lock.close()
            return
        time.sleep(0.01)


def _sweep(uid: int) -> None:
    """SIGKILL every process of `uid`: whatever a run started dies with it (the kernel spares the caller)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            ["kill", "-KILL", "-1"], user=uid, group=uid, extra_groups=[], timeout=10,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip


def _tool(name: str) -> str:
    """A tool's absolute path, found on this process's PATH (the program's own PATH is the bare `_ENV` one)."""
    return shutil.which(name) or name


def _command(level: str, python: str, prog: Path, limits: Limits, uid: int | None) -> tuple[list[str], str | None]:
    """The argv for `level` and the working directory to start it in (None: bwrap sets its own)."""
    setpriv = [_tool("setpriv"), f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    run = [python, "-I", "-B"]
    if level.startswith("bwrap"):
        inner = [*_bwrap_args(limits.disk_mb), "--ro-bind", str(prog), "/work/main.py", "--chdir", "/work"]
        cmd = [*_prlimit_args(limits), *inner, *run, "/work/main.py"]
        return ([*setpriv, *cmd] if level == "bwrap+uid" else cmd), None
    cmd = [*_prlimit_args(limits), *run, str(prog)]
    return ([*setpriv, *cmd] if level == "uid" else cmd), str(prog.parent)


_TOOLS = {"bwrap+uid": ("setpriv", "prlimit", "bwrap"), "bwrap": ("prlimit", "bwrap"), "uid": ("setpriv", "prlimit")}


def _tools_for(level: str) -> tuple[str, ...]:
    return _TOOLS.get(level, ("prlimit",))


@functools.cache
def isolation_level(python: str = DEFAULT_PYTHON) -> str:
    """The strongest level that works here, found by running a trivial program under each in turn."""
    candidates = [lv for lv in LEVELS if os.geteuid() == 0 or "uid" not in lv]
    for level in candidates:
        if any(shutil.which(tool) is None for tool in _tools_for(level)):
            continue
        result = _run(level, python, "print(6 * 7)", "", Limits(timeout_s=10))
        if result.status == "ok" and result.stdout.strip() == "42":
            return level
        log.info("sandbox level %s unavailable here: %s", level, (result.stderr or result.status).strip()[:200])
    log.warning("sandbox: only rlimits are available; untrusted code is weakly contained on this machine")
    return "rlimit"


def require_level(level: str | None = None, python: str = DEFAULT_PYTHON) -> str:
    """The level untrusted code will run at: `level` when named (any of `LEVELS`), else the strongest available,
    which must be a bubblewrap one; raises `SandboxRefused` (bubblewrap unusable, nothing named) or ValueError.
    `R1DISTILL_SANDBOX=LEVEL` in the environment names a level for stages without a recipe key for it (rl)."""
    level = level or os.environ.get("R1DISTILL_SANDBOX") or None
    if level is not None:
        if level not in LEVELS:
            raise ValueError(f"sandbox level {level!r}: choose one of {', '.join(LEVELS)}")
        return level
    best = isolation_level(python)
    if best not in STRONG_LEVELS:
        raise SandboxRefused(
            f"sandbox: bubblewrap is not usable here (best level {best!r}: network open, host /tmp writable), so "
            "model-written code is not run; install it (apt-get install bubblewrap) or accept the weaker level "
            f"explicitly with `verify.code.isolation: {best}` (evaluate: `evaluate.code_isolation: {best}`; any stage: "
            f"R1DISTILL_SANDBOX={best})"
        )
    return best


def _read_capped(path: Path, cap: int) -> tuple[str, bool]:
    with open(path, "rb") as f:
        data = f.read(cap + 1)
    return data[:cap].decode("utf-8", errors="replace"), len(data) >= cap


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _run(level: str, python: str, code: str, stdin: str, limits: Limits) -> RunResult:
    with _uid_slot(level) as uid:
        return _run_as(level, python, code, stdin, limits, uid)


def _run_as(level: str, python: str, code: str, stdin: str, limits: Limits, uid: int | None) -> RunResult:
    base = Path(tempfile.mkdtemp(prefix="r1d-sandbox-"))
    start = time.monotonic()
    try:
        prog = base / "work" / "main.py"
        prog.parent.mkdir()
        prog.write_text(code, encoding="utf-8")
        (base / "stdin").write_text(stdin, encoding="utf-8")
        if level == "uid" and uid is not None:  # the program runs in its own folder: let the sandbox uid write it
            os.chown(prog.parent, uid, uid)
        os.chmod(base, 0o755)
        prog.chmod(0o644)
        cmd, cwd = _command(level, python, prog, limits, uid)
        with open(base / "stdin", "rb") as fin, open(base / "out", "wb") as fout, open(base / "err", "wb") as ferr:
            try:
                proc = subprocess.Popen(
                    cmd, stdin=fin, stdout=fout, stderr=ferr, cwd=cwd or "/", env=_ENV, start_new_session=True
                )
            except OSError as e:
                return RunResult("sandbox_error", None, "", str(e), 0.0, level)
            try:
                returncode: int | None = proc.wait(timeout=limits.wall_s)
                timed_out = False
            except subprocess.TimeoutExpired:
                timed_out, returncode = True, None
            _kill_group(proc.pid)  # also on success: nothing the program started outlives it
            proc.wait()
        wall = time.monotonic() - start
        stdout, out_full = _read_capped(base / "out", limits.output_bytes)
        stderr, err_full = _read_capped(base / "err", 64 << 10)
        if timed_out:
            status = "timeout"
        elif returncode != 0 and level.startswith("bwrap") and stderr.startswith("bwrap: ") and not stdout:
            status = "sandbox_error"  # the sandbox failed to set up (e.g. EAGAIN creating a namespace): not the code
        elif out_full or (err_full and "File too large" in stderr):
            status = "output_limit"
        elif returncode == 0:
            status = "ok"
        elif returncode in (-signal.SIGXCPU, 128 + signal.SIGXCPU):  # bwrap reports a signal death as 128 + signo
            status = "timeout"  # the CPU limit (several busy threads reach it before the wall clock)
        elif "MemoryError" in stderr[-2000:]:
            status = "memory_limit"
        else:
            status = "runtime_error"
        return RunResult(status, returncode, stdout, stderr, wall, level)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def run_python(
    code: str, stdin: str = "", limits: Limits | None = None, python: str = DEFAULT_PYTHON, level: str | None = None
) -> RunResult:
    """Run `code` as a Python program with `stdin`, contained at `level` (default: the strongest available, which
    must be a bubblewrap level: see `require_level`, whose `SandboxRefused` this raises)."""
    level = require_level(level, python)
    for attempt in range(3):
        result = _run(level, python, code, stdin, limits or Limits())
        if result.status != "sandbox_error":
            return result
        log.warning("sandbox: set-up failed (attempt %d): %s", attempt + 1, result.stderr.strip()[:200])
        time.sleep(0.1 * (attempt + 1))
    return result
