"""evaluate's default subject is the run's trained student (RUN_DIR/rl or RUN_DIR/sft), with baselines such as the
teacher evaluated the same way beside it. Until sft.py lands, the "student" is the bundled teacher's files in a
RUN_DIR/sft folder with a manifest written last, as a finished sft stage leaves it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1distill.core import stage
from r1distill.core.config import Recipe, config_hash
from r1distill.core.store import StageError, manifest_hash, read_manifest, write_manifest
from r1distill.evaluate import report as eval_report
from r1distill.evaluate import stage as evaluate

ENGINE_KWARGS = {"dtype": "bfloat16", "max_model_len": 1024, "enforce_eager": True}  # as conftest's shared engine


def make_student(folder: Path, teacher_dir: Path, **fields) -> Path:
    """A finished training output: the model's files (linked, not copied: 270 MB), then manifest.json last."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in teacher_dir.iterdir():
        if not f.name.startswith(".") and not (folder / f.name).exists():
            (folder / f.name).symlink_to(f)
    write_manifest(folder, {"stage": folder.name, "base_model": "bundled:smollm2", **fields})
    return folder


def _cfg(**kw) -> evaluate.EvaluateConfig:
    base = dict(benchmarks=["arith"], n=2, limit=4, sampling={"max_tokens": 32}, vllm=dict(ENGINE_KWARGS), ks=[1, 2])
    return evaluate.EvaluateConfig(**{**base, **kw})


def test_upstream_is_the_trained_student_unless_a_model_is_named():
    assert evaluate.upstream(Recipe(None, {"sft": {}, "evaluate": {}})) == "sft"
    assert evaluate.upstream(Recipe(None, {"sft": {}, "rl": {}, "evaluate": {}})) == "rl"
    assert evaluate.upstream(Recipe(None, {"evaluate": None})) == "sft"
    assert evaluate.upstream(Recipe(None, {"rl": {}, "evaluate": {"model": "bundled:smollm2"}})) is None


def test_stage_resolves_evaluate_input_to_the_student(tmp_path):
    recipe = Recipe(None, {"run_dir": str(tmp_path), "sft": {}, "rl": {}, "evaluate": {}})
    inp, out = stage.resolve_dirs(recipe, "evaluate", None, None)
    if inp is None:
        pytest.skip("stage.resolve_dirs does not consult evaluate.upstream yet (the lead's stage.py change)")
    assert inp == tmp_path / "rl" and out == tmp_path / "evaluate"
    recipe = Recipe(None, {"run_dir": str(tmp_path), "sft": {}, "evaluate": {"model": "bundled:smollm2"}})
    assert stage.resolve_dirs(recipe, "evaluate", None, None)[0] is None


def test_missing_or_unfinished_student_is_refused_before_any_engine(tmp_path, teacher_dir):
    out = tmp_path / "evaluate"
    with pytest.raises(StageError, match="evaluate.model: not set"):
        evaluate.run(_cfg(), None, out)
    with pytest.raises(StageError, match="no trained student at .*sft"):
        evaluate.run(_cfg(), tmp_path / "sft", out)
    sft = make_student(tmp_path / "sft", teacher_dir)
    (sft / "manifest.json").unlink()  # weights on disk, no manifest: a run killed before it finished
    with pytest.raises(StageError, match="has no manifest.json; its training did not finish"):
        evaluate.run(_cfg(), sft, out)
    (sft / "checkpoints" / "checkpoint-2").mkdir(parents=True)
    with pytest.raises(StageError, match="unfinished training run"):
        evaluate.run(_cfg(), sft, out)
    with pytest.raises(StageError, match="evaluate.model: .* unfinished training run"):
        evaluate.run(_cfg(model=str(sft)), None, out)
    with pytest.raises(StageError, match="evaluate.baselines.base: .* unfinished training run"):
        evaluate.run(_cfg(model="bundled:smollm2", baselines={"base": str(sft)}), None, out)
    assert read_manifest(out) is None


def test_bad_baseline_label_and_unknown_published_model(tmp_path):
    with pytest.raises(StageError, match="evaluate.baselines.a/b: a label names a folder"):
        evaluate.run(_cfg(model="bundled:smollm2", baselines={"a/b": "bundled:smollm2"}), None, tmp_path)
    with pytest.raises(StageError, match="evaluate.published_model: 'Qwen-7B' has no published numbers"):
        evaluate.run(_cfg(model="bundled:smollm2", published_model="Qwen-7B"), None, tmp_path)


def test_a_retrained_model_folder_changes_the_config_hash(tmp_path, teacher_dir):
    student = make_student(tmp_path / "sft", teacher_dir, created="first")
    cfg = _cfg(model=str(student), baselines={"teacher": "bundled:smollm2"})
    before = config_hash(cfg)
    assert config_hash(_cfg(model=str(student), baselines={"teacher": "bundled:smollm2"})) == before
    write_manifest(student, {"stage": "sft", "created": "second"})
    assert config_hash(cfg) != before


def _metrics(pass1: float) -> dict:
    m = evaluate.bench_metrics(
        [
            {"row": "a", "k": k, "meta": {"finish_reason": "stop"}, "grade": {"correct": k == 0, "reason": "x"}}
            for k in range(2)
        ],
        "math",
        2,
        [1],
    )
    return {**m, "pass@1": pass1, "published": 55.5, "published_cons": 83.3}


@pytest.mark.parametrize("n", [4, 64])
def test_cons_beside_published_cons64_is_marked_unless_n_is_64(n):
    report = {
        "model": "runs/x/sft",
        "label": "student",
        "n": n,
        "benchmarks": {"aime24": _metrics(0.25)},
        "baselines": {"teacher": {"model": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "benchmarks": {}}},
        "caveats": eval_report.caveats(evaluate.EvaluateConfig(n=n)),
        "environment": eval_report.environment(evaluate.EvaluateConfig()),
    }
    report["baselines"]["teacher"]["benchmarks"]["aime24"] = _metrics(0.5)
    md = eval_report.report_markdown(report)
    rows = [line for line in md.splitlines() if line.startswith("| aime24 |")]
    assert [r.split(" | ")[1] for r in rows] == ["student", "teacher"]  # side by side, the evaluated model first
    assert "| 25.0 |" in rows[0] and "| 50.0 |" in rows[1]
    if n == 64:  # R1's own protocol: nothing to mark
        assert "†" not in md and report["caveats"] == []
    else:
        assert f"| cons@{n} † |" in md and all("†" in r.split(" | ")[6] for r in rows)
        assert any("not like-with-like" in c for c in report["caveats"]) and "Caveats:" in md


def test_caveats_name_short_answers_and_other_sampling():
    cfg = evaluate.EvaluateConfig(n=64, sampling={"max_tokens": 512, "temperature": 1.0})
    text = " ".join(eval_report.caveats(cfg))
    assert "max_tokens 512 < the published 32768" in text and "temperature 1.0" in text and "cons@" not in text


@pytest.mark.slow
def test_student_beside_teacher_then_a_retrained_student_is_evaluated_again(tmp_path, teacher_dir, vllm_engine):
    run_dir = tmp_path / "run"
    student = make_student(run_dir / "sft", teacher_dir, created="first training")
    out = run_dir / "evaluate"
    cfg = _cfg(baselines={"teacher": "bundled:smollm2"})
    engines = {"teacher": vllm_engine}  # the shared engine holds the same weights as both models here
    manifest = evaluate.run(cfg, student, out, engine=vllm_engine, engines=engines)
    report = json.loads((out / "report.json").read_text())
    assert report == manifest["report"] and report["label"] == "student" and report["model"] == str(student)
    assert manifest["input_hash"] == manifest_hash(student) and stage.is_done(out, cfg, student)
    ours, theirs = report["benchmarks"]["arith"], report["baselines"]["teacher"]["benchmarks"]["arith"]
    assert ours["problems"] == theirs["problems"] == 4 and ours["samples"] == theirs["samples"] == 8
    assert ours["last_run_samples"] == theirs["last_run_samples"] == 8
    scored = {
        who: [json.loads(line) for line in (folder / "arith" / "scored.jsonl").read_text().splitlines()]
        for who, folder in (("student", out), ("teacher", out / "baselines" / "teacher"))
    }
    assert [s["id"] for s in scored["student"]] == [s["id"] for s in scored["teacher"]]
    for key in ("messages", "reference"):  # the same protocol: same prompts, references, sampling and seeds
        assert [s[key] for s in scored["student"]] == [s[key] for s in scored["teacher"]]
    assert [s["meta"]["sampling"] for s in scored["student"]] == [s["meta"]["sampling"] for s in scored["teacher"]]
    md = (out / "report.md").read_text()
    assert "| arith | student | 4 |" in md and "| arith | teacher | 4 |" in md and f"student = {student}" in md
    assert "arith (student): pass@1" in evaluate.summary(manifest) and "arith (teacher)" in evaluate.summary(manifest)

    # retraining rewrites the student's folder and its manifest: the stage is no longer done, and the student's
    # old samples (same path, other weights) are drawn again while the teacher's are reused
    write_manifest(student, {"stage": "sft", "created": "second training"})
    assert not stage.is_done(out, cfg, student)
    again = evaluate.run(cfg, student, out, engine=vllm_engine, engines=engines)
    assert again["input_hash"] == manifest_hash(student)
    assert again["report"]["benchmarks"]["arith"]["last_run_samples"] == 8
    assert again["report"]["baselines"]["teacher"]["benchmarks"]["arith"]["last_run_samples"] == 0
    assert not list(out.rglob("*.tmp"))


@pytest.mark.slow
def test_paired_delta_against_each_baseline_and_one_model_under_two_labels_is_scored_once(
    tmp_path, teacher_dir, vllm_engine
):
    """The student beside the teacher on the same problems: report.json holds Δ pass@1 with a paired CI and p-value
    (recomputed here from the scored files), the report page shows it beside the bars; a baseline naming the same
    model as another (bundled:smollm2 and its folder) is sampled once and shown under both labels."""
    import shutil
    import subprocess

    from r1distill.evaluate import metrics
    from r1distill.report.page import write_report

    run_dir = tmp_path / "run"
    student = make_student(run_dir / "sft", teacher_dir)
    out = run_dir / "evaluate"
    cfg = _cfg(
        baselines={"teacher": "bundled:smollm2", "again": str(teacher_dir)},
        lenient_think=True,
        sampling={"max_tokens": 48},
        limit=6,
    )
    manifest = evaluate.run(cfg, student, out, engine=vllm_engine, engines={"teacher": vllm_engine})
    report = json.loads((out / "report.json").read_text())
    assert report == manifest["report"]
    assert report["baselines"]["again"]["same_model_as"] == "teacher"
    assert report["baselines"]["again"]["benchmarks"] == report["baselines"]["teacher"]["benchmarks"]
    assert not (out / "baselines" / "again" / "arith" / "samples").exists()  # never sampled: no engine time
    rates = {
        who: metrics.outcomes_by_problem(
            [json.loads(line) for line in (folder / "arith" / "scored.jsonl").read_text().splitlines()]
        )
        for who, folder in (("student", out), ("teacher", out / "baselines" / "teacher"))
    }
    d = report["paired"]["teacher"]["arith"]
    assert d["problems"] == 6 and set(rates["student"]) == set(rates["teacher"])
    expected = sum(rates["student"][p] - rates["teacher"][p] for p in rates["student"]) / 6
    assert d["delta"] == pytest.approx(expected)
    assert d["ci95"][0] <= d["delta"] <= d["ci95"][1] and 0 < d["p_value"] <= 1
    assert d == metrics.paired_delta(rates["student"], rates["teacher"], seed=0) and "bootstrap" in d["method"]
    assert report["paired"]["again"]["arith"] == d
    md = (out / "report.md").read_text()
    assert f"| arith | teacher | 6 | {100 * d['delta']:+.1f} |" in md and "| arith | again (same model) | 6 |" in md

    index = write_report(run_dir)
    html = index.read_text()
    assert "Δ pass@1 = student - baseline" in html and f"<td class=n>{100 * d['delta']:+.1f}</td>" in html
    assert "<td>again (= teacher)</td>" in html
    assert 'class="side"><img src="eval.png"' in html and (index.parent / "eval_delta.png").exists()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("Debian's chromium is not installed (tests/setup_system.sh installs it as root): no screenshot")
    import numpy as np
    from PIL import Image
    from test_report import ARTIFACTS

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "report_paired.png"
    shot.unlink(missing_ok=True)
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--screenshot={shot}",
         "--window-size=1280,2400", index.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shot.exists(), proc.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB"), dtype=np.int16)
    purple = np.abs(pixels - np.array([0x75, 0x50, 0x7B])).max(axis=2) < 12  # the forest plot's Δ marks
    assert int(purple.sum()) > 100, int(purple.sum())
    columns = np.nonzero(purple.any(axis=0))[0]
    assert columns.min() > 1280 * 0.45  # on the right, beside the bars


def test_caveats_for_a_subset_or_a_non_r1_prompt_beside_published_numbers():
    from r1distill.evaluate import benchmarks

    cfg = evaluate.EvaluateConfig(limit=10, system_prompt="Be brief.", prefill="")
    aime, arith = benchmarks.get("aime24"), benchmarks.get("arith")
    text = " ".join(eval_report.caveats(cfg, [aime, arith], {"aime24": True, "arith": True}))
    assert "limit 10: aime24, arith scored on their first 10 problems only (a subset); aime24: not comparable" in text
    assert "a system prompt was used" in text and "prefill '' differs from R1's" in text
    quiet = " ".join(eval_report.caveats(cfg, [arith], {"arith": False}))  # no published numbers, no cut
    assert "limit" not in quiet and "system prompt" not in quiet and "prefill" not in quiet


def test_bad_options_are_refused_before_any_engine():
    from r1distill.grading.judge import JudgeConfig

    for cfg, field_name in (
        (evaluate.EvaluateConfig(paired_method="z"), "evaluate.paired_method"),
        (evaluate.EvaluateConfig(code_isolation="docker"), "evaluate.code_isolation"),
        (evaluate.EvaluateConfig(judge=JudgeConfig(enabled=True)), "evaluate.judge.http.base_urls"),
    ):
        with pytest.raises(StageError, match=field_name):
            evaluate.validate(cfg)
