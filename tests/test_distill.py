"""The distill stage on CPU: TRL's DistillationTrainer (teacher in-process or on a real vLLM server), resume after
SIGKILL, the vocabulary check. The student is a tiny random model with the bundled teacher's tokenizer."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from conftest import REPO

from r1distill.core.config import ConfigError, from_dict
from r1distill.core.store import StageError, read_manifest
from r1distill.testing.models import build_tiny_model
from r1distill.train import distill


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, teacher_dir):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", tokenizer_dir=teacher_dir)


def _section(model, teacher, **trl) -> dict:
    return {
        "model": str(model),
        "teacher": str(teacher),
        "sources": [{"name": "arith", "builtin": "arithmetic", "count": 8}],
        "trl": {
            "max_steps": 2,
            "per_device_train_batch_size": 4,
            "max_completion_length": 12,
            "learning_rate": 1e-2,
            "gradient_checkpointing": False,
            "save_strategy": "no",
            "seed": 0,
            **trl,
        },
    }


def _cfg(model, teacher, **trl) -> distill.DistillStageConfig:
    return from_dict(distill.Config, _section(model, teacher, **trl), "distill")


def reverse_kl(student, teacher, sequences, prompt_len: int) -> float:
    """Exact per-token KL(student || teacher) over the full vocabulary at the completion positions of fixed
    sequences: the quantity on-policy distillation with beta 1 minimises, without the noise of fresh samples."""
    import torch

    with torch.no_grad():
        s = torch.log_softmax(student(sequences).logits[:, prompt_len - 1 : -1].float(), -1)
        t = torch.log_softmax(teacher(sequences).logits[:, prompt_len - 1 : -1].float(), -1)
    return (s.exp() * (s - t)).sum(-1).mean().item()


@pytest.mark.slow
def test_reverse_kl_to_the_teacher_falls_on_the_training_prompts(tmp_path, tiny, teacher_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = _cfg(tiny, teacher_dir, max_steps=6, learning_rate=3e-2, lr_scheduler_type="constant")
    out = tmp_path / "distill"
    manifest = distill.run(cfg, None, out)
    assert manifest["steps"] == 6 and manifest["teacher_server"] is False and manifest["beta"] == 1.0

    # the student's own samples on a training prompt (from its starting point), scored before and after
    tok = AutoTokenizer.from_pretrained(tiny)
    prompt = distill.build_dataset(distill.load_prompts_from(cfg.sources, None, "s"), _gen(cfg, tiny), tok)[0]
    ids = tok(prompt["prompt"], return_tensors="pt").input_ids
    start = AutoModelForCausalLM.from_pretrained(tiny).eval()
    torch.manual_seed(0)
    seqs = start.generate(ids.repeat(8, 1), do_sample=True, max_new_tokens=12, min_new_tokens=12, pad_token_id=0)
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32).eval()
    trained = AutoModelForCausalLM.from_pretrained(out).eval()
    before, after = reverse_kl(start, teacher, seqs, ids.shape[1]), reverse_kl(trained, teacher, seqs, ids.shape[1])
    assert after < 0.85 * before, (before, after)  # 4.6 -> 3.8 nats at lr 1e-2 decaying over 8 steps
    assert math.isfinite(manifest["loss_first"]) and math.isfinite(manifest["loss_last"])
    assert distill.summary(manifest).startswith("6 on-policy steps on 8 prompts")


def _gen(cfg, model):
    from r1distill.generate import stage as generate

    return generate.GenerateConfig(sources=cfg.sources, model=str(model), prefill=cfg.prefill)


def test_a_teacher_with_another_vocabulary_is_refused_in_one_line(tmp_path, teacher_dir, capsys):
    other = build_tiny_model(tmp_path / "other")  # its own 512-token tokenizer
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"name": "t", "run_dir": str(tmp_path / "run"),
                                      "distill": _section(other, teacher_dir)}))  # fmt: skip
    capsys.readouterr()
    assert distill.main(["-c", str(recipe)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
    assert len(err) == 1 and err[0].startswith("r1distill distill: error: distill.teacher "), err
    assert "vocabulary (49152 tokens) is not the student's (" in err[0]
    assert not (tmp_path / "run" / "distill" / "manifest.json").exists()


def test_user_errors_name_the_field(tmp_path, tiny, teacher_dir):
    with pytest.raises(ConfigError, match=r"distill\.trl: unknown DistillationConfig argument 'num_generations'"):
        distill.validate(_cfg(tiny, teacher_dir, num_generations=4))
    with pytest.raises(ConfigError, match=r"distill\.trl\.teacher_model_name_or_path: name the teacher"):
        distill.validate(_cfg(tiny, teacher_dir, teacher_model_name_or_path="x"))
    with pytest.raises(StageError, match=r"distill: .* holds no finished sft run"):
        distill.student_model(from_dict(distill.Config, {"sources": []}, "distill"), tmp_path)
    # a server teacher's settings are ServerDistillationConfig's (loss_top_k is one of them)
    distill.validate(_cfg(tiny, "http://127.0.0.1:1", loss_top_k=1))
    with pytest.raises(StageError, match=r"distill\.teacher 'http://127\.0\.0\.1:1': no vLLM server answers"):
        distill.check_vocabulary(None, "http://127.0.0.1:1")


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_from_its_newest_complete_checkpoint(tmp_path, tiny, teacher_dir):
    recipe = tmp_path / "recipe.yaml"
    section = _section(
        tiny,
        teacher_dir,
        max_steps=4,
        save_strategy="steps",
        save_steps=2,
        save_total_limit=10,
        per_device_train_batch_size=2,
        max_completion_length=8,
    )
    recipe.write_text(yaml.safe_dump({"name": "t", "run_dir": str(tmp_path / "run"), "distill": section}))
    out = tmp_path / "run" / "distill"
    cmd = [sys.executable, "-m", "r1distill", "distill", "-c", str(recipe)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    while not (out / "checkpoints" / "checkpoint-2" / "trainer_state.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "no checkpoint-2 before the deadline"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "manifest.json").exists()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = read_manifest(out)
    step = int(manifest["resumed_from"].rsplit("-", 1)[1])
    assert step == 2 and manifest["steps"] == 4  # killed after checkpoint-2, before the final step


@pytest.mark.slow
def test_a_teacher_on_a_vllm_server_scores_the_students_tokens(tmp_path, tiny, vllm_server):
    teacher_server = vllm_server
    other = build_tiny_model(tmp_path / "other")
    with pytest.raises(StageError, match=r"distill\.teacher .*tokenises text differently"):
        from transformers import AutoTokenizer

        distill.check_vocabulary(AutoTokenizer.from_pretrained(other), teacher_server.url)
    cfg = _cfg(tiny, teacher_server.url, max_steps=3)
    manifest = distill.run(cfg, None, tmp_path / "distill")
    assert manifest["teacher_server"] is True and manifest["steps"] == 3
    history = [e for e in _history(tmp_path / "distill") if "loss" in e and "train_runtime" not in e]
    assert len(history) == 3 and all(math.isfinite(e["loss"]) and e["loss"] != 0 for e in history)


def _history(out):
    import json

    return json.loads((out / "trainer_state.json").read_text())["log_history"]


@pytest.mark.slow
def test_the_pruned_student_keeps_every_other_teacher_layer_and_generates(tmp_path, teacher_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from r1distill.core.models import build_pruned_student

    path = build_pruned_student(teacher_dir, tmp_path / "student")
    student = AutoModelForCausalLM.from_pretrained(path).eval()
    teacher = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32).eval()
    assert student.config.num_hidden_layers == 15 and student.config.vocab_size == teacher.config.vocab_size
    for i, layer in enumerate(student.model.layers):
        w = teacher.model.layers[2 * i].mlp.down_proj.weight
        assert torch.equal(layer.mlp.down_proj.weight, w) and layer.self_attn.layer_idx == i
    tok = AutoTokenizer.from_pretrained(path)
    ids = tok("The capital of France is", return_tensors="pt").input_ids
    # cached greedy decoding equals uncached: the KV cache follows the renumbered layers
    cached = student.generate(ids, max_new_tokens=6, do_sample=False, use_cache=True)
    uncached = student.generate(ids, max_new_tokens=6, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)
    with torch.no_grad():
        full = teacher(ids, labels=ids).loss.item()
        pruned = student(ids, labels=ids).loss.item()
    assert pruned > full  # measurably worse than its teacher: something to distil
