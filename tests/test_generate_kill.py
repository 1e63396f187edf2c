"""Kill generate with SIGKILL at random moments (engine start, mid-stream), rerun, and check that every requested
sample is on disk exactly once. The whole process group is killed, as a scheduler does to a job."""

import contextlib
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from r1distill.core.store import iter_records, read_manifest

pytestmark = pytest.mark.slow

RECIPE = """\
generate:
  sources: [{name: arith, builtin: arithmetic, count: 12}]
  n: 2
  sampling: {max_tokens: 64, ignore_eos: true}
  vllm: {dtype: bfloat16, max_model_len: 512, enforce_eager: true}
  rows_per_shard: 7
  max_in_flight: 3   # completions finish in waves of 3, so a kill can land between and inside waves
"""


def start(recipe, out):
    return subprocess.Popen(
        [sys.executable, "-m", "r1distill.generate", "--config", str(recipe), "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def lines_on_disk(out, pattern="part-*.jsonl*"):
    """Lines in the shards now; a shard renamed between the listing and the read (sealed) counts at the next poll."""
    n = 0
    for p in out.glob(pattern):
        with contextlib.suppress(FileNotFoundError):
            n += p.read_bytes().count(b"\n")
    return n


def kill_group(proc):
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # the engine's worker processes must die with it
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise AssertionError("processes of the killed group are still alive")


def test_sigkill_at_random_points_then_resume(tmp_path):
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    out = tmp_path / "out"
    total = 24
    kills = []
    # 1: during engine start-up; 2 and 3: while samples stream to disk, after a random number of them.
    for attempt in range(3):
        proc = start(recipe, out)
        if attempt == 0:
            time.sleep(rng.uniform(1, 6))
        else:
            target = min(lines_on_disk(out) + rng.randint(1, 6), total - 2)
            deadline = time.monotonic() + 240
            while lines_on_disk(out) < target and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(rng.uniform(0, 0.3))
        if proc.poll() is not None:
            break
        kill_group(proc)
        kills.append(lines_on_disk(out))
        assert read_manifest(out) is None  # a killed run never looks finished
    print(f"killed with {kills} samples on disk (seed {seed})")
    proc = start(recipe, out)
    _, err = proc.communicate(timeout=400)
    assert proc.returncode == 0, err.decode()[-3000:]
    ids = [r["id"] for r in iter_records(out)]
    expected = {f"arith/{i}/{k}" for i in range(12) for k in range(2)}
    assert len(ids) == len(set(ids)), f"duplicates after kills at {kills} (seed {seed})"
    assert set(ids) == expected, f"lost samples after kills at {kills} (seed {seed})"
    assert read_manifest(out)["counts"]["samples"] == total
    assert not list(out.glob("*.tmp"))
    mid_stream = [k for k in kills[1:] if 0 < k < total]
    assert mid_stream, f"no kill landed while samples were streaming (kills at {kills}, seed {seed})"
