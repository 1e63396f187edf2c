"""The README's main job, for real: `r1distill run pipelines/quickstart.yaml` on the bundled teacher, every stage,
then the built dataset read back with `datasets.load_dataset` holds exactly the samples the filter kept."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from test_build import check_rows_equal_samples, load

from r1distill.records import Sample
from r1distill.shards import iter_records, manifest_hash, read_manifest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def run_quickstart(run_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "r1distill", "run", "pipelines/quickstart.yaml", f"run_dir={run_dir}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_quickstart_runs_every_stage_and_round_trips(tmp_path):
    run_dir = tmp_path / "qs"
    proc = run_quickstart(run_dir)
    assert proc.returncode == 0, proc.stderr[-4000:]
    stages = ("generate", "verify", "filter", "build", "evaluate")
    manifests = {stage: read_manifest(run_dir / stage) for stage in stages}
    assert all(manifests.values()), {k: v is not None for k, v in manifests.items()}
    assert manifests["generate"]["counts"] == {"prompts": 32, "n": 2, "samples": 64}
    # each stage's input is the previous one's finished output
    for before, after in (("generate", "verify"), ("verify", "filter"), ("filter", "build")):
        assert manifests[after]["input_hash"] == manifest_hash(run_dir / before)
    kept = [Sample.from_dict(r) for r in iter_records(run_dir / "filter")]
    assert kept, "the quickstart kept no sample: the recipe no longer exercises build"
    assert all(s.meta["verify"]["correct"] for s in kept)  # rejection sampling held
    check_rows_equal_samples(load(run_dir / "build", tmp_path), kept)
    assert "run finished" in proc.stderr and str(run_dir / "build") in proc.stderr
    assert (run_dir / "filter" / "report.md").exists() and (run_dir / "build" / "README.md").exists()
    report = json.loads((run_dir / "evaluate" / "report.json").read_text())
    arith = report["benchmarks"]["arith"]
    assert 0.0 <= arith["pass@1"] <= 1.0 and (run_dir / "evaluate" / "report.md").exists()

    again = run_quickstart(run_dir)  # idempotent: every stage is recognised as done, nothing is rewritten
    assert again.returncode == 0, again.stderr[-2000:]
    for stage in manifests:
        assert f"{stage:<9} done" in again.stderr
        assert json.loads((run_dir / stage / "manifest.json").read_text())["created"] == manifests[stage]["created"]
