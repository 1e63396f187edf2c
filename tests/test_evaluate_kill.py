"""Kill `r1distill evaluate` (its whole process group, as a scheduler does) with SIGKILL while samples stream to disk,
rerun it, and check the end state: every (problem, k) sampled exactly once, no temp file left, and the report the
same as an uninterrupted evaluation of the samples on disk gives."""

import json
import random
import shutil
import subprocess
import sys
import time

import pytest
from test_generate_kill import kill_group, lines_on_disk

from r1distill.core.config import load_recipe
from r1distill.core.store import iter_records, read_manifest
from r1distill.evaluate import stage as evaluate

pytestmark = pytest.mark.slow

BENCHES = ("arith", "gsm8k")
PROBLEMS, N = 4, 2
TOTAL = len(BENCHES) * PROBLEMS * N

RECIPE = """\
evaluate:
  model: bundled:smollm2
  benchmarks: [arith, gsm8k]
  n: 2
  limit: 4
  data_root: {data_root}
  sampling: {{max_tokens: 40}}
  vllm: {{dtype: bfloat16, max_model_len: 1024, enforce_eager: true}}
  max_in_flight: 2      # completions finish in pairs, so a kill lands between and inside them
  lenient_think: true
"""


def start(recipe, out):
    return subprocess.Popen(
        [sys.executable, "-m", "r1distill.evaluate", "--config", str(recipe), "--output", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def on_disk(out):
    return lines_on_disk(out, "*/samples/part-*.jsonl*")


def test_sigkill_mid_sampling_then_resume(tmp_path, shared_dir):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.format(data_root=shared_dir / "benchmarks"))
    out = tmp_path / "out"
    proc = start(recipe, out)
    target = rng.randint(1, TOTAL - 4)
    deadline = time.monotonic() + 120
    while on_disk(out) < target and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(rng.uniform(0, 0.3))
    assert proc.poll() is None, f"evaluate ended before the kill: {proc.stderr.read().decode()[-2000:]}"
    kill_group(proc)
    killed_at = on_disk(out)
    assert 0 < killed_at < TOTAL, f"the kill landed outside sampling ({killed_at} samples on disk, seed {seed})"
    assert read_manifest(out) is None and not (out / "report.json").exists()

    proc = start(recipe, out)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()[-3000:]
    manifest = read_manifest(out)
    for name in BENCHES:
        ids = [r["id"] for r in iter_records(out / name / "samples")]
        assert len(ids) == len(set(ids)) == PROBLEMS * N, f"killed at {killed_at} (seed {seed})"
        assert {r["k"] for r in iter_records(out / name / "samples")} == set(range(N))
        assert manifest["report"]["benchmarks"][name]["samples"] == PROBLEMS * N
    assert not list(out.rglob("*.tmp")), list(out.rglob("*.tmp"))
    resumed = sum(m["last_run_samples"] for m in manifest["report"]["benchmarks"].values())
    assert resumed == TOTAL - killed_at  # only the missing samples were drawn again

    # the same samples evaluated in one go, in a fresh folder, give the same report and the same grades
    fresh = tmp_path / "fresh"
    for name in BENCHES:
        shutil.copytree(out / name / "samples", fresh / name / "samples")
    cfg = load_recipe(recipe).section("evaluate", evaluate.EvaluateConfig)
    again = evaluate.run(cfg, None, fresh)
    for name in BENCHES:
        a, b = dict(manifest["report"]["benchmarks"][name]), dict(again["report"]["benchmarks"][name])
        a.pop("last_run_samples"), b.pop("last_run_samples")
        assert a == b
        assert (out / name / "scored.jsonl").read_text() == (fresh / name / "scored.jsonl").read_text()
    assert json.loads((out / "report.json").read_text())["benchmarks"].keys() == set(BENCHES)
