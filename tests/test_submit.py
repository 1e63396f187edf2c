"""`r1distill submit`: rendered scripts (no cluster needed) and a real generate run on a local single-node Slurm."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from slurm_cluster import wait

from r1distill.cluster.submit import main
from r1distill.core.store import iter_records, read_manifest


def write_recipe(tmp_path: Path, slurm: dict | None = None, run_dir: str = "run", **generate) -> Path:
    recipe = {
        "name": "tiny",
        "run_dir": str(tmp_path / run_dir),
        "generate": {
            "sources": [{"name": "arith", "builtin": "arithmetic", "count": 4}],
            "n": 1,
            "sampling": {"max_tokens": 8},
            "vllm": {"dtype": "bfloat16", "max_model_len": 512, "enforce_eager": True},
            **generate,
        },
    }
    if slurm is not None:
        recipe["slurm"] = slurm
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def dry_run(capsys, *argv: str) -> str:
    assert main([*argv, "--dry-run"]) == 0
    return capsys.readouterr().out


# ---- rendering -------------------------------------------------------------------------------------------------


def test_generate_dry_run_renders_array_shard_and_merge_after_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = write_recipe(tmp_path)
    out = dry_run(capsys, "generate", "-c", "recipe.yaml", "--shards", "3", "generate.n=2")
    array, merge = out.split("# ===== ")[1:]
    assert "#SBATCH --array=0-2\n" in array
    assert f'-m r1distill generate -c {recipe} --shard "${{SLURM_ARRAY_TASK_ID}}/3" generate.n=2\n' in array
    assert "--merge-shards 3 generate.n=2" in merge and "--array" not in merge
    assert "# sbatch --parsable --dependency=afterok:<generate-array job id>" in merge
    assert f"#SBATCH --output={tmp_path}/run/slurm/logs/%x-%A_%a.out" in array
    assert f"#SBATCH --chdir={tmp_path}\n" in array
    # nothing cluster-specific unless the recipe asks for it, and nothing written or submitted
    for absent in ("--partition", "--account", "--container", "--gpus", "--mem", "--time"):
        assert absent not in out
    assert not (tmp_path / "run").exists()


def test_recipe_slurm_section_and_flags_render_quoted(tmp_path, capsys):
    slurm = {
        "partition": "from-recipe",
        "account": "my lab",
        "gpus_per_node": 8,
        "container_image": "nvcr.io/team/img:24.01",
        "container_mounts": ["/data:/data", "/scratch dir:/scratch"],
        "env": {"HF_HOME": "/cache with space", "NCCL_DEBUG": "WARN"},
        "setup": ["source .venv/bin/activate"],
        "extra_sbatch": ["--qos=high", "#SBATCH --exclusive"],
        "python": "python3",
        "max_running": 2,
    }
    recipe = write_recipe(tmp_path, slurm)
    flags = ["--partition", "gpu", "--time", "4:00:00"]
    out = dry_run(capsys, "generate", "-c", str(recipe), *flags, "generate.system_prompt=be brief", "slurm.mem=64G")
    array, merge = out.split("# ===== ")[1:]
    assert "#SBATCH --partition=gpu\n" in array and "from-recipe" not in out  # the flag wins over the recipe
    assert "#SBATCH --account='my lab'\n" in array and "#SBATCH --account='my lab'\n" in merge
    assert "#SBATCH --gpus-per-node=8\n" in array and "--gpus-per-node" not in merge  # the merge needs no GPU
    assert "#SBATCH --mem=64G\n#SBATCH --time=4:00:00\n#SBATCH --qos=high\n#SBATCH --exclusive\n" in array
    assert "--container-image=nvcr.io/team/img:24.01" in array
    assert "--container-mounts='/data:/data,/scratch dir:/scratch'" in array
    assert "export HF_HOME='/cache with space'\nexport NCCL_DEBUG=WARN\nsource .venv/bin/activate\n" in array
    assert " python3 -m r1distill generate " in array
    assert "'generate.system_prompt=be brief'" in array and "'generate.system_prompt=be brief'" in merge
    assert "#SBATCH --array=0-0%2\n" in array  # default: one shard per node, one node; throttled to 2 at once


def test_sft_dry_run_launches_one_accelerate_per_node(tmp_path, capsys):
    recipe = write_recipe(tmp_path, {"nodes": 4, "gpus_per_node": 8, "main_process_port": 29611})
    out = dry_run(capsys, "sft", "-c", str(recipe), "sft.trl.learning_rate=1e-5")
    assert "#SBATCH --nodes=4\n#SBATCH --ntasks-per-node=1\n" in out and "--array" not in out
    assert 'MAIN_PROCESS_IP="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"' in out
    assert "export MAIN_PROCESS_IP MAIN_PROCESS_PORT=29611" in out
    launch = out.strip().splitlines()[-1]
    assert launch.startswith("srun --ntasks-per-node=1 ") and " bash -c '" in launch
    # rank and host are expanded per task, inside bash -c (single-quoted in the batch script)
    for part in (
        "--multi_gpu",  # no deepspeed: in the recipe: DDP
        '--num_machines "$SLURM_NNODES"',
        '--machine_rank "$SLURM_NODEID"',
        '--main_process_ip "$MAIN_PROCESS_IP"',
        '--num_processes "$((SLURM_NNODES * 8))"',
        f"--module r1distill.train.sft -c {recipe} sft.trl.learning_rate=1e-5'",
    ):
        assert part in launch


def test_bad_recipe_or_slurm_section_is_a_one_line_error(tmp_path, capsys):
    recipe = write_recipe(tmp_path, {"partiton": "gpu"})
    assert main(["generate", "-c", str(recipe), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "slurm: unknown key 'partiton'" in err and "partition" in err
    recipe = write_recipe(tmp_path, {"env": {"BAD-NAME": "x"}})
    assert main(["generate", "-c", str(recipe), "--dry-run"]) == 2
    assert "'BAD-NAME' is not a valid environment variable name" in capsys.readouterr().err
    recipe = write_recipe(tmp_path)
    assert main(["generate", "-c", str(recipe), "--shards", "0", "--dry-run"]) == 2
    assert "--shards must be at least 1" in capsys.readouterr().err
    assert main(["sft", "-c", str(recipe), "--shards", "2", "--dry-run"]) == 2
    assert "--shards is for generate; use --nodes" in capsys.readouterr().err


def test_cli_dispatches_submit(tmp_path, capsys):
    from r1distill.cli import main as cli_main

    assert cli_main(["submit", "generate", "-c", str(write_recipe(tmp_path)), "--shards", "2", "--dry-run"]) == 0
    assert "#SBATCH --array=0-1\n" in capsys.readouterr().out


def test_a_refused_later_job_cancels_the_earlier_ones(tmp_path, capsys, monkeypatch):
    """Stand-in sbatch/scancel (the real ones cannot be made to accept the array and refuse its merge)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "sbatch").write_text(
        f'#!/bin/bash\necho "sbatch $*" >> {calls}\n'
        f'if [ "$(grep -c ^sbatch {calls})" = 1 ]; then echo 101; exit 0; fi\n'
        'echo "sbatch: error: Batch job submission failed: Job dependency problem" >&2; exit 1\n'
    )
    (bin_dir / "scancel").write_text(f'#!/bin/bash\necho "scancel $*" >> {calls}\n')
    for exe in bin_dir.iterdir():
        exe.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert main(["generate", "-c", str(write_recipe(tmp_path)), "--shards", "2"]) == 2
    err = capsys.readouterr().err
    assert "sbatch refused generate-merge.sbatch" in err and "Job dependency problem" in err
    lines = calls.read_text().splitlines()
    assert lines[1].startswith("sbatch --parsable --dependency=afterok:101 --kill-on-invalid-dep=yes ")
    assert lines[2] == "scancel 101"
    assert not (tmp_path / "run" / "slurm" / "jobs.json").exists()


def test_missing_sbatch_is_a_one_line_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["generate", "-c", str(write_recipe(tmp_path))]) == 2
    assert "sbatch not found on PATH" in capsys.readouterr().err


# ---- a real Slurm ----------------------------------------------------------------------------------------------


def test_unknown_partition_is_refused_with_its_name(slurm, tmp_path, capsys):
    recipe = write_recipe(tmp_path)
    assert main(["generate", "-c", str(recipe), "--partition", "no-such-partition"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("r1distill submit: error: sbatch refused generate-array.sbatch")
    assert "no-such-partition" in err and "invalid partition" in err.lower()
    assert not (tmp_path / "run" / "slurm" / "jobs.json").exists()


@pytest.mark.slow
def test_generate_on_real_slurm_two_shards_then_merge(slurm, tmp_path, capsys):
    env = {
        "VLLM_CPU_KVCACHE_SPACE": "1",
        "HF_HUB_OFFLINE": "1",
        "VLLM_NO_USAGE_STATS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "HOME": str(Path.home()),  # the converted bundled teacher is cached under ~/.cache/r1distill
        "PATH": os.environ["PATH"],
    }
    if "R1DISTILL_HOME" in os.environ:
        env["R1DISTILL_HOME"] = os.environ["R1DISTILL_HOME"]
    slurm_section = {
        "partition": slurm.partition,
        "cpus_per_task": 1,
        "mem": "3G",
        "env": env,
        "python": sys.executable,
    }
    recipe = write_recipe(tmp_path, slurm_section, run_dir="run dir")  # a space: #SBATCH values are quoted
    run = tmp_path / "run dir"
    assert main(["generate", "-c", str(recipe), "--shards", "2", "generate.prompt_template='{problem} Be brief.'"]) == 0
    out = capsys.readouterr().out
    jobs = json.loads((run / "slurm" / "jobs.json").read_text())["generate"]
    ids = [j["id"] for j in jobs["jobs"]]
    assert [j["name"] for j in jobs["jobs"]] == ["generate-array", "generate-merge"]
    assert jobs["jobs"][1]["after"] == "generate-array" and f"squeue -j {','.join(ids)}" in out
    states = wait(ids, timeout=240)
    logs = "".join(p.read_text()[-1500:] for p in sorted((run / "slurm" / "logs").glob("*")))
    assert states == {ids[0]: ["COMPLETED", "COMPLETED"], ids[1]: ["COMPLETED"]}, logs
    gen = run / "generate"
    rows = [r["id"] for r in iter_records(gen)]
    assert sorted(rows) == [f"arith/{i}/0" for i in range(4)]  # every id exactly once
    manifest = read_manifest(gen)
    assert manifest["merged_shards"] == 2 and manifest["counts"]["samples"] == 4
    assert manifest["sampling"]["max_tokens"] == 8
    assert sum(read_manifest(gen / "shards" / f"{i}-of-2")["counts"]["samples"] for i in range(2)) == 4
    for r in iter_records(gen):  # the KEY=VALUE override (quotes, spaces, braces) reached the jobs intact
        assert r["messages"][-1]["content"] == r["problem"] + " Be brief."


def test_a_failed_shard_cancels_the_merge_instead_of_leaving_it_pending(slurm, tmp_path, capsys):
    env = {"PATH": os.environ["PATH"], "HOME": str(Path.home()), "HF_HUB_OFFLINE": "1"}
    slurm_section = {
        "partition": slurm.partition,
        "cpus_per_task": 1,
        "mem": "1G",
        "env": env,
        "python": sys.executable,
    }
    recipe = write_recipe(tmp_path, slurm_section, model=str(tmp_path / "no-such-model"))  # fails as the job starts
    assert main(["generate", "-c", str(recipe), "--shards", "1"]) == 0
    array_id, merge_id = (
        j["id"] for j in json.loads((tmp_path / "run" / "slurm" / "jobs.json").read_text())["generate"]["jobs"]
    )
    states = wait([array_id, merge_id], timeout=90)
    assert states == {array_id: ["FAILED"], merge_id: ["CANCELLED"]}
    [log] = (tmp_path / "run" / "slurm" / "logs").glob("tiny-generate-*_0.out")
    assert "no-such-model" in log.read_text()
