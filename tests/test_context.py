"""Issue 18 item 10: a student whose context is shorter than the traces it is trained on is refused before any
step, by the dry-run (offline) and at sft start, and `sft.model_config` fixes it, reaching the trained model."""

from __future__ import annotations

import json

import pytest
import sft_data

from r1distill.core.config import ConfigError
from r1distill.pipeline import run as pipeline
from r1distill.testing.models import build_tiny_model
from r1distill.train import context, sft

QWEN_MATH = {"max_position_embeddings": 4096, "rope_theta": 10000.0}


def test_max_length_past_the_students_positions_is_refused_naming_the_fix():
    with pytest.raises(ConfigError) as e:
        context.check("Qwen/Qwen2.5-Math-7B", None, 32768, False, None, config=dict(QWEN_MATH))
    msg = str(e.value)
    assert "sft.trl.max_length=32768 exceeds what Qwen/Qwen2.5-Math-7B can encode: 4,096 positions" in msg
    assert "rope_theta 10000" in msg and "sft.model_config: {rope_theta: 300000, max_position_embeddings: 32768}" in msg
    assert "\n" not in msg
    fixed = {"rope_theta": 300000, "max_position_embeddings": 32768}
    ctx = context.check("Qwen/Qwen2.5-Math-7B", fixed, 32768, False, None, config=dict(QWEN_MATH))
    assert ctx.positions == 32768 and ctx.rope_theta == 300000


def test_rows_shorter_than_the_context_pass_unless_packed_and_rope_scaling_counts():
    # Without packing only the longest row's positions are used; packing fills every sequence to max_length.
    assert context.check("m", None, 32768, False, 3000, config=dict(QWEN_MATH)).positions == 4096
    with pytest.raises(ConfigError, match=r"the longest row \(6,000 tokens\)"):
        context.check("m", None, 32768, False, 6000, config=dict(QWEN_MATH))
    with pytest.raises(ConfigError, match="max_length=32768"):
        context.check("m", None, 32768, True, 3000, config=dict(QWEN_MATH))
    yarn = {"max_position_embeddings": 32768, "rope_scaling": {"type": "yarn", "factor": 4.0}}
    assert context.check("m", None, 100_000, True, None, config=yarn).positions == 131072
    nested = {"max_position_embeddings": 4096, "rope_parameters": {"rope_type": "default", "rope_theta": 1e4}}
    assert context.with_overrides(nested, {"rope_theta": 3e5})["rope_parameters"]["rope_theta"] == 3e5


def test_an_uncached_hub_student_is_checked_at_sft_start_not_guessed():
    assert context.raw_config("someone/not-a-cached-model")[0] is None
    assert context.check("someone/not-a-cached-model", None, 10**6, True, None) is None
    config, source = context.raw_config("Qwen/Qwen2.5-Math-1.5B")
    assert config["max_position_embeddings"] == 4096 and "Qwen/Qwen2.5-Math-1.5B" in source


@pytest.mark.parametrize("recipe", ["pipelines/r1-distill-qwen-7b.yaml", "pipelines/r1-distill-qwen-1.5b.yaml"])
def test_the_shipped_qwen_recipes_carry_the_rope_change_and_dry_run_refuses_without_it(recipe, tmp_path, capsys):
    assert pipeline.main([recipe, f"run_dir={tmp_path}", "--dry-run"]) == 0
    capsys.readouterr()
    assert pipeline.main([recipe, f"run_dir={tmp_path}", "--dry-run", "sft.model_config=null"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("r1distill run: error: sft.trl.max_length=32768 exceeds") and "model_config" in err


def test_overrides_land_in_transformers_rope_parameters_not_a_silently_ignored_kwarg(tmp_path):
    from transformers import AutoConfig

    student = build_tiny_model(tmp_path / "s", arch="qwen2")
    hf = context.load_config(str(student), {"rope_theta": 300000.0, "max_position_embeddings": 8192})
    assert hf.rope_parameters["rope_theta"] == 300000.0 and hf.max_position_embeddings == 8192
    # What the override is there to avoid: from_pretrained(rope_theta=...) keeps the old base without a word.
    assert AutoConfig.from_pretrained(student, rope_theta=300000.0).rope_parameters["rope_theta"] != 300000.0
    with pytest.raises(ConfigError, match="sft.model_config.rope_thetaa: Qwen2Config has no such setting"):
        context.load_config(str(student), {"rope_thetaa": 1.0})


def test_sft_start_refuses_before_the_model_loads(tmp_path, monkeypatch):
    student = build_tiny_model(tmp_path / "s", arch="qwen2")  # 2,048 positions
    build = sft_data.make_build_dir(tmp_path / "build", train=8, validation=0)
    loaded = []
    monkeypatch.setattr("trl.SFTTrainer.__init__", lambda *a, **k: loaded.append(1))
    cfg = sft.Config(model=str(student), trl={"max_length": 4096, "packing": True, "max_steps": 1})
    with pytest.raises(ConfigError, match="max_length=4096 exceeds .* 2,048 positions"):
        sft.run(cfg, build, tmp_path / "out")
    assert not loaded and not (tmp_path / "out" / "manifest.json").exists()


@pytest.mark.slow
def test_model_config_reaches_the_trained_model_and_its_card(tmp_path):
    from transformers import AutoConfig

    student = build_tiny_model(tmp_path / "s", arch="qwen2")
    build = sft_data.make_build_dir(tmp_path / "build", train=16, validation=0)
    overrides = {"rope_theta": 300000.0, "max_position_embeddings": 8192}
    trl = {"max_length": 4096, "packing": True, "max_steps": 2, "per_device_train_batch_size": 4}
    manifest = sft.run(sft.Config(model=str(student), trl=trl, model_config=overrides), build, tmp_path / "out")
    trained = AutoConfig.from_pretrained(tmp_path / "out")
    assert trained.rope_parameters["rope_theta"] == 300000.0 and trained.max_position_embeddings == 8192
    assert manifest["model_config_overrides"] == overrides
    card = (tmp_path / "out" / "README.md").read_text()
    assert "model_config_overrides" in card and '"rope_theta": 300000.0' in card
    assert json.loads((tmp_path / "out" / "config.json").read_text())["max_position_embeddings"] == 8192
