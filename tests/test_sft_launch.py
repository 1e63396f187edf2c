"""sft the way users launch it: 2 processes under DeepSpeed ZeRO-2/ZeRO-3 (gloo on CPU) through `accelerate launch`,
and a SIGKILL mid-training after a checkpoint, resumed by running the same command again."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import sft_data
import torch
import yaml

from r1distill.testing.models import build_tiny_model
from r1distill.train import common as training

pytestmark = pytest.mark.slow

TRL = {"learning_rate": 3e-3, "per_device_train_batch_size": 4, "max_length": 256, "save_steps": 4}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    root = tmp_path_factory.mktemp("launch")
    build_tiny_model(root / "student")
    sft_data.make_build_dir(root / "build", train=32, validation=0)
    return root


def recipe(root, name: str, **sft) -> str:
    path = root / f"{name}.yaml"
    section = {"model": str(root / "student"), **sft}
    path.write_text(yaml.safe_dump({"name": name, "run_dir": str(root / name), "sft": section}))
    return str(path)


def env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accelerate(*argv: str) -> list[str]:
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--use_deepspeed", "--num_processes", "2"]
    return [
        *launch,
        "--num_machines",
        "1",
        "--main_process_port",
        str(free_port()),
        "--module",
        "r1distill.train.sft",
        *argv,
    ]


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_with_two_processes_through_accelerate_launch(workdir, stage):
    from transformers import AutoModelForCausalLM

    cfg = recipe(workdir, f"zero{stage}", deepspeed=f"zero{stage}", trl={**TRL, "max_steps": 8})
    done = subprocess.run(accelerate("-c", cfg, "-i", str(workdir / "build")), env=env(), capture_output=True,
                          text=True, timeout=240)  # fmt: skip
    out = workdir / f"zero{stage}" / "sft"
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["steps"] == 8
    # the checkpoint is DeepSpeed's own, one shard per rank: proof the ZeRO stage really ran partitioned
    [ds_dir] = (out / "checkpoints" / "checkpoint-8").glob("global_step*")
    names = sorted(p.name for p in ds_dir.iterdir())
    if stage == 3:  # parameters partitioned too: one model-state file per rank
        assert names == [f"zero_pp_rank_{r}_mp_rank_00_{kind}_states.pt" for r in (0, 1) for kind in ("model", "optim")]
    else:  # ZeRO-2: one full model state, optimizer partitioned per rank
        assert "mp_rank_00_model_states.pt" in names
        assert {f"zero_pp_rank_{r}_mp_rank_00_optim_states.pt" for r in (0, 1)} <= set(names)
    trained = AutoModelForCausalLM.from_pretrained(out).state_dict()
    initial = AutoModelForCausalLM.from_pretrained(workdir / "student").state_dict()
    assert trained.keys() == initial.keys()
    assert all(trained[k].shape == initial[k].shape for k in initial)  # full weights gathered, not rank shards
    assert any(not torch.equal(trained[k], initial[k]) for k in initial)


def wait_for_checkpoint(proc, out, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = training.last_checkpoint(out)
        if found:
            return found
        assert proc.poll() is None, "training ended before writing a checkpoint"
        time.sleep(0.05)
    pytest.fail("no checkpoint within the timeout")


def test_sigkill_after_a_checkpoint_then_rerun_resumes_from_it(workdir):
    cfg = recipe(workdir, "kill", trl={**TRL, "max_steps": 40, "save_steps": 5})
    command = [sys.executable, "-m", "r1distill", "sft", "-c", cfg, "-i", str(workdir / "build")]
    out = workdir / "kill" / "sft"
    proc = subprocess.Popen(command, env=env(), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        killed_at = wait_for_checkpoint(proc, out)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "manifest.json").exists()  # unfinished: nothing claims to be a trained model
    resume_from = training.last_checkpoint(out)  # a newer one may have been written before the kill landed
    step = int(resume_from.rsplit("-", 1)[1])
    assert 5 <= step < 40 and int(killed_at.rsplit("-", 1)[1]) <= step
    again = subprocess.run(command, env=env(), capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"resuming from {resume_from}" in again.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["resumed_from"] == resume_from and manifest["steps"] == 40
    logged = [e["step"] for e in training.loss_history(out) if "loss" in e]
    assert logged == list(range(1, 41))  # the step counter continued: every step once, none repeated
