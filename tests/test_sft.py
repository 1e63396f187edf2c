"""sft on one CPU process with real TRL: the loss falls, labels cover the assistant turn only, packing, LoRA, the
final folder is a model, reruns and config changes are handled. Tiny random students, a locally built dataset."""

from __future__ import annotations

import json

import pytest
import sft_data
import torch
import yaml

from r1distill.core.store import StageError
from r1distill.testing.models import build_tiny_model
from r1distill.train import common as training
from r1distill.train import sft

pytestmark = pytest.mark.slow

FAST = {"learning_rate": 3e-3, "per_device_train_batch_size": 8, "max_length": 256, "save_steps": 10}


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("student"), arch="qwen2")


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory):
    return sft_data.make_build_dir(tmp_path_factory.mktemp("data") / "build", train=64, validation=4)


def config(student, **trl) -> sft.Config:
    return sft.Config(model=str(student), trl={**FAST, **trl})


def weights(folder) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForCausalLM

    return {k: v.detach().clone() for k, v in AutoModelForCausalLM.from_pretrained(folder).state_dict().items()}


def losses(out) -> list[float]:
    return [e["loss"] for e in training.loss_history(out) if "loss" in e]


def test_loss_falls_and_the_output_folder_is_the_trained_model(student, build_dir, tmp_path):
    from transformers import AutoTokenizer, GenerationConfig

    out = tmp_path / "sft"
    manifest = sft.run(config(student, max_steps=30), build_dir, out)
    curve = losses(out)
    assert len(curve) == 30 and sum(curve[-5:]) / 5 < sum(curve[:5]) / 5 - 0.5, curve
    assert manifest["steps"] == 30 and manifest["train_rows"] == 64 and manifest["train_tokens"] > 0
    assert json.loads((out / "manifest.json").read_text())["config_hash"] == manifest["config_hash"]
    before, after = weights(student), weights(out)
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    tok = AutoTokenizer.from_pretrained(out)
    eos = GenerationConfig.from_pretrained(out).eos_token_id
    assert tok.eos_token_id in (eos if isinstance(eos, list) else [eos])
    card = (out / "README.md").read_text()
    assert str(build_dir) in card and manifest["dataset_card_sha256"] in card and '"learning_rate": 0.003' in card
    assert [p.name for p in (out / "checkpoints").glob("checkpoint-*")] and not (out / ".saving").exists()
    assert "30 steps on 64 rows" in sft.summary(manifest)


def _first_batch(job):
    batch = next(iter(job.trainer.get_train_dataloader()))
    return {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}


def test_labels_cover_reasoning_answer_and_eos_but_not_the_prompt(student, build_dir, tmp_path):
    job = sft.prepare(config(student, max_steps=1, shuffle_dataset=False), build_dir, tmp_path / "sft")
    batch = _first_batch(job)
    tok, ids, labels = job.tokenizer, batch["input_ids"][0], batch["labels"][0]
    trained = tok.decode(ids[labels != -100])
    untrained = tok.decode(ids[(labels == -100) & (batch["attention_mask"][0] == 1)])
    assert trained.startswith("<think>\nLet me compute.") and "</think>\n\nThe answer is \\boxed{" in trained
    assert trained.endswith("<|im_end|>")  # EOS is trained: the student learns to stop
    assert "<|im_start|>user" in untrained and "<|im_start|>assistant" in untrained and "<think>" not in untrained


def test_packing_puts_several_rows_in_one_sequence_and_still_trains(student, build_dir, tmp_path):
    out = tmp_path / "sft"
    cfg = config(student, max_steps=8, packing=True, max_length=512, per_device_train_batch_size=2)
    job = sft.prepare(cfg, build_dir, out)
    assert len(job.trainer.train_dataset) < 64  # rows were packed together (bfd)
    batch = _first_batch(job)
    starts = (batch["position_ids"][0] == 0).sum().item()
    assert batch["input_ids"].shape[0] == 1 and starts >= 2  # padding-free: one row holding several sequences
    labels = batch["labels"][0]
    assert (labels == -100).sum() > 0 and (labels != -100).sum() > 0  # prompts still masked inside the pack
    manifest = sft.run(cfg, build_dir, out)
    curve = losses(out)
    assert manifest["steps"] == 8 and curve[-1] < curve[0]


def test_lora_trains_an_adapter_and_saves_it_merged(student, build_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    out = tmp_path / "sft"
    cfg = sft.Config(model=str(student), trl={**FAST, "max_steps": 10, "learning_rate": 2e-2},
                     peft={"r": 8, "lora_alpha": 16, "target_modules": "all-linear"})  # fmt: skip
    sft.run(cfg, build_dir, out)
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["r"] == 8
    model = AutoModelForCausalLM.from_pretrained(out)  # a plain model: vLLM, evaluate and rl load it as is
    assert not any("lora" in name for name in model.state_dict())
    before, after = weights(student), weights(out)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed and all("proj" in k or "mlp" in k for k in changed)  # only LoRA-wrapped linears moved
    assert losses(out)[-1] < losses(out)[0]


def test_rerun_is_a_no_op_and_other_checkpoints_are_not_resumed(student, build_dir, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"run_dir": str(tmp_path), "sft": {"model": str(student), "trl": FAST}}))
    argv = ["-c", str(recipe), "-i", str(build_dir), "sft.trl.max_steps=4", "sft.trl.save_steps=2"]
    assert sft.main(argv) == 0
    stamp = (tmp_path / "sft" / "manifest.json").stat().st_mtime_ns
    assert sft.main(argv) == 0 and (tmp_path / "sft" / "manifest.json").stat().st_mtime_ns == stamp
    (tmp_path / "sft" / "manifest.json").unlink()  # as if killed after its checkpoints, then the recipe edited
    with pytest.raises(StageError, match="checkpoints come from another sft config"):
        sft.run(config(student, max_steps=4, learning_rate=1e-4), build_dir, tmp_path / "sft")
    assert sft.main([*argv, "sft.trl.learning_rate=1e-4", "--force"]) == 0
    assert json.loads((tmp_path / "sft" / "manifest.json").read_text())["resumed_from"] is None


def test_preflight_only_passes_a_good_template_and_refuses_a_think_stripping_one(student, build_dir, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"run_dir": str(tmp_path), "sft": {"model": str(student)}}))
    assert sft.main(["-c", str(recipe), "-i", str(build_dir), "--preflight-only"]) == 0
    assert "preflight passed" in capsys.readouterr().err and not (tmp_path / "sft").exists()
    config_path = student / "tokenizer_config.json"
    saved = config_path.read_text()
    stripping = (  # like DeepSeek-R1-Distill's template: the assistant turn loses everything before </think>
        "{% for m in messages %}{% if m['role'] == 'assistant' %}{% generation %}"
        "{{ m['content'].split('</think>')[-1] + '<|im_end|>' }}{% endgeneration %}"
        "{% else %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endif %}{% endfor %}"
    )
    try:
        (student / "chat_template.jinja").rename(student / "kept.jinja")
        (student / "chat_template.jinja").write_text(stripping)
        assert sft.main(["-c", str(recipe), "-i", str(build_dir), "--preflight-only"]) == 2
        err = capsys.readouterr().err
        assert "preflight failed" in err and "<think>" in err
    finally:
        (student / "kept.jinja").replace(student / "chat_template.jinja")
        config_path.write_text(saved)


def test_missing_build_and_bad_settings_are_one_line_errors(student, tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"run_dir": str(tmp_path), "sft": {"model": str(student), "trl": {"lr": 1}}}))
    assert sft.main(["-c", str(recipe)]) == 2
    assert "sft.trl: unknown SFTConfig argument 'lr'" in capsys.readouterr().err
    assert sft.main(["-c", str(recipe), "sft.trl={}", "sft.deepspeed=zero9"]) == 2
    assert "zero2, zero3, zero3_offload" in capsys.readouterr().err
    assert sft.main(["-c", str(recipe), "sft.trl={}"]) == 2
    assert "build: no manifest.json; the build stage did not finish there" in capsys.readouterr().err
