"""The README's main job, for real: `r1distill run pipelines/quickstart.yaml` on the bundled teacher, every stage,
then the built dataset read back with `datasets.load_dataset` holds exactly the samples the filter kept."""

import json
from collections import defaultdict

import pytest
from conftest import run_quickstart
from test_build import check_rows_equal_samples, load

from r1distill.core.records import Sample
from r1distill.core.store import iter_records, manifest_hash, read_manifest

pytestmark = pytest.mark.slow


def test_quickstart_runs_every_stage_and_round_trips(quickstart_run, tmp_path):
    run_dir, proc = quickstart_run
    stages = ("generate", "verify", "filter", "build", "sft", "rl", "evaluate")
    manifests = {stage: read_manifest(run_dir / stage) for stage in stages}
    assert all(manifests.values()), {k: v is not None for k, v in manifests.items()}
    assert manifests["generate"]["counts"] == {"prompts": 32, "n": 2, "samples": 64}
    # each stage's input is the previous one's finished output; evaluate reads the final student (rl)
    chain = ("generate", "verify", "filter", "build", "sft", "rl", "evaluate")
    for before, after in zip(chain, chain[1:], strict=False):
        assert manifests[after]["input_hash"] == manifest_hash(run_dir / before), after
    kept = [Sample.from_dict(r) for r in iter_records(run_dir / "filter")]
    assert kept, "the quickstart kept no sample: the recipe no longer exercises build"
    assert all(s.meta["verify"]["correct"] for s in kept)  # rejection sampling held
    check_rows_equal_samples(load(run_dir / "build", tmp_path), kept)
    assert "run finished" in proc.stderr and str(run_dir / "build") in proc.stderr
    assert (run_dir / "filter" / "report.md").exists() and (run_dir / "build" / "README.md").exists()
    assert manifests["sft"]["train_rows"] == manifests["build"]["counts"]["train"]
    assert (run_dir / "sft" / "adapter" / "adapter_config.json").exists()  # LoRA, saved merged for vLLM
    assert manifests["rl"]["steps"] == 2
    report = json.loads((run_dir / "evaluate" / "report.json").read_text())
    assert report["label"] == "student" and {"start", "teacher"} <= set(report["baselines"])  # beside both
    # the untrained start is the teacher's own weights here: sampled once, shown under both labels
    assert report["baselines"]["teacher"].get("same_model_as") == "start"
    assert set(report["paired"]) == {"start", "teacher"}
    # pass@1 is the mean over problems of each problem's share of correct samples, as graded on disk
    evaluated = run_dir / "evaluate"
    for folder, bench in (
        (evaluated / "arith", report["benchmarks"]["arith"]),
        (evaluated / "baselines" / "start" / "arith", report["baselines"]["teacher"]["benchmarks"]["arith"]),
    ):
        by_row = defaultdict(list)
        for line in (folder / "scored.jsonl").read_text().splitlines():
            rec = json.loads(line)
            by_row[rec["row"]].append(bool(rec["grade"]["correct"]))
        assert bench["problems"] == len(by_row) and bench["samples"] == sum(map(len, by_row.values()))
        assert bench["pass@1"] == pytest.approx(sum(sum(v) / len(v) for v in by_row.values()) / len(by_row))
    assert (run_dir / "evaluate" / "report.md").exists()

    again = run_quickstart(run_dir)  # idempotent: every stage is recognised as done, nothing is rewritten
    assert again.returncode == 0, again.stderr[-2000:]
    for stage in manifests:
        assert f"{stage:<9} done" in again.stderr
        assert json.loads((run_dir / stage / "manifest.json").read_text())["created"] == manifests[stage]["created"]
