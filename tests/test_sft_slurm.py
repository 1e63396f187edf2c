"""`r1distill submit sft` on a real single-node Slurm (slurmctld + slurmd on localhost, started by the tests): a
2-process ZeRO-2 CPU training job is cancelled with `scancel` once it has a checkpoint; the same submission sent
again resumes from it and runs to the end, leaving a loadable model.

(DeepSpeed, not plain DDP, on purpose: transformers 5.17 cannot resume a multi-process *CPU* DDP run, it maps the
optimizer state to "cpu:0", which torch.load refuses. GPU DDP and DeepSpeed on any device resume fine.)"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest
import sft_data
import yaml
from slurm_cluster import wait
from test_sft_launch import free_port

from r1distill.cluster.slurm import scancel
from r1distill.cluster.submit import main as submit_main
from r1distill.testing.models import build_tiny_model
from r1distill.train import common as training

pytestmark = pytest.mark.slow


def write_recipe(root: Path, slurm, name: str, **sft) -> Path:
    env = {"PATH": os.environ["PATH"], "HOME": str(Path.home()), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    section = {
        "partition": slurm.partition,
        "cpus_per_task": 2,
        "mem": "6G",
        "env": env,
        "python": sys.executable,
        "processes_per_node": 2,
        "main_process_port": free_port(),
    }
    trl = {"learning_rate": 3e-3, "per_device_train_batch_size": 4, "max_length": 256, "save_steps": 4}
    body = {"model": str(root / "student"), "dataset": str(root / "build"), **sft}
    body["trl"] = {**trl, **sft.get("trl", {})}
    recipe = {"name": name, "run_dir": str(root / name), "slurm": section, "sft": body}
    path = root / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("slurm-sft")
    build_tiny_model(root / "student")
    sft_data.make_build_dir(root / "build", train=32, validation=0)
    return root


def job_id(run: Path) -> str:
    return json.loads((run / "slurm" / "jobs.json").read_text())["sft"]["jobs"][0]["id"]


def logs(run: Path) -> str:
    return "".join(p.read_text()[-3000:] for p in (run / "slurm" / "logs").glob("*"))


def test_scancel_leaves_a_checkpoint_and_the_resubmitted_job_finishes_a_loadable_model(slurm, root):
    from transformers import AutoModelForCausalLM

    recipe = write_recipe(root, slurm, "cancel", deepspeed="zero2", trl={"max_steps": 120, "save_steps": 5})
    run = root / "cancel"
    assert submit_main(["sft", "-c", str(recipe)]) == 0
    first = job_id(run)
    deadline = time.monotonic() + 180
    while not training.last_checkpoint(run / "sft"):
        assert time.monotonic() < deadline, logs(run)
        time.sleep(0.2)
    scancel([first])
    assert wait([first], timeout=60)[first] == ["CANCELLED"]
    assert not (run / "sft" / "manifest.json").exists()
    checkpoint = training.last_checkpoint(run / "sft")
    assert checkpoint and int(checkpoint.rsplit("-", 1)[1]) < 120
    assert submit_main(["sft", "-c", str(recipe)]) == 0  # the same submission again
    second = job_id(run)
    assert second != first and list(wait([second], timeout=240).values()) == [["COMPLETED"]], logs(run)
    manifest = json.loads((run / "sft" / "manifest.json").read_text())
    assert manifest["resumed_from"] == checkpoint and manifest["steps"] == 120 and manifest["world_size"] == 2
    assert AutoModelForCausalLM.from_pretrained(run / "sft").num_parameters() > 0
