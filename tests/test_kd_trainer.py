"""KDTrainer on real sidecars (SmolLM2 teacher top-k, see kd_data.py) and a tiny student of the same tokenizer:
alignment, the loss against plain sft and against the formula, packing, truncation, LoRA, online teacher."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from datasets import Dataset
from kd_data import teacher_run, tiny_student
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import SFTConfig, SFTTrainer

from r1distill.core.config import ConfigError
from r1distill.generate import logprobs
from r1distill.testing.models import build_tiny_model
from r1distill.train import kd
from r1distill.train.kd import align
from r1distill.train.kd.loss import full_kl, topk_kl

K = 20


@pytest.fixture(scope="module")
def run(tmp_path_factory, teacher_dir):
    root = tmp_path_factory.mktemp("kd")
    rows = teacher_run(teacher_dir, root / "generate", n=8, k=K)
    student = tiny_student(teacher_dir, root / "student")
    return {"root": root, "rows": rows, "student": student, "tok": AutoTokenizer.from_pretrained(student)}


def sft_args(run, **kw):
    base = dict(output_dir=str(run["root"] / "ckpt"), use_cpu=True, bf16=False, report_to="none",
                assistant_only_loss=True, per_device_train_batch_size=8, logging_steps=1, save_strategy="no",
                max_steps=1, learning_rate=1e-3, seed=0)  # fmt: skip
    return SFTConfig(**{**base, **kw})


def kd_trainer(run, raw, model=None, **kw):
    args = sft_args(run, **kw.pop("args", {}))
    cls, train, _, extra = kd.setup(raw, "sft.kd", tokenizer=run["tok"], student=str(run["student"]),
                                    input_dir=run["root"] / "build", train=Dataset.from_list(run["rows"]),
                                    eval=None, args=args)  # fmt: skip
    model = model or AutoModelForCausalLM.from_pretrained(run["student"])
    return cls(model=model, args=args, train_dataset=train, processing_class=run["tok"], **extra, **kw)


def build_dir(run):
    """RUN_DIR/build as the build stage leaves it (parquet + manifest), beside RUN_DIR/generate."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from r1distill.core.store import write_manifest

    build = run["root"] / "build"
    if not (build / "manifest.json").exists():
        (build / "data").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(run["rows"]), build / "data" / "train-00000-of-00001.parquet")
        write_manifest(build, {"stage": "build", "rows": len(run["rows"])})
    return build


def first_batch(trainer):
    return trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))


def test_alignment_maps_each_student_token_to_the_teacher_token_it_copies(run):
    tok = run["tok"]
    table, skip = align.piece_table(tok), align.special_ids(tok)
    assert b"".join(table[i] for i in tok("héllo wörld 😀\n\n x")["input_ids"]) == "héllo wörld 😀\n\n x".encode()
    total = aligned = 0
    for row in run["rows"]:
        ids = tok.apply_chat_template(row["messages"], tokenize=True, return_dict=True)["input_ids"]
        lp = logprobs.read(run["root"] / "generate", json.loads(row["meta"])["logprobs"])
        src, n = align.align(ids, row["messages"][-1]["content"], lp.token_ids, table, skip)
        have = np.nonzero(src >= 0)[0]
        assert (lp.token_ids[src[have]] == np.asarray(ids)[have]).all()  # the same token, the same sampled step
        assert (np.diff(src[have]) > 0).all()
        assert (align.from_runs(align.to_runs(src), len(src)) == src).all() and len(align.to_runs(src)) <= 4
        assert src[-2] == len(lp.token_ids) - 1 and ids[-2] == tok.convert_tokens_to_ids("<|im_end|>")
        total, aligned = total + n, aligned + len(have)
    # Only the prefill (`<think>\n`, never sampled) and retokenized whitespace go without a teacher distribution.
    assert aligned / total > 0.8


@pytest.mark.parametrize("packing", [False, True])
def test_alpha_zero_is_plain_sft_and_the_loss_follows_the_formula(run, packing):
    args = {"packing": packing, "max_length": 512}
    trainer = kd_trainer(run, {"alpha": 0.0}, args=args)
    batch = first_batch(trainer)
    sft = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(run["student"]), args=sft_args(run, **args),
                     train_dataset=Dataset.from_list(run["rows"]), processing_class=run["tok"])  # fmt: skip
    with torch.no_grad():
        assert trainer.compute_loss(trainer.model, dict(batch)).item() == pytest.approx(
            sft.compute_loss(sft.model, dict(batch)).item(), rel=1e-5
        )
    # The mix by hand: logits at j - 1 against the teacher's distribution for token j, label positions only.
    trainer.kd.config.alpha, trainer.kd.config.temperature = 0.3, 2.0
    top_ids, top_lp = trainer.kd.offline.batch(batch)
    labels = batch["labels"]
    has = top_ids[..., 0] >= 0
    assert not (has & (labels == -100)).any()  # prompt tokens never get teacher data
    assert has.sum() > 0.7 * (labels != -100).sum()
    with torch.no_grad():
        z = trainer.model(**{k: v for k, v in batch.items() if k != "labels"}).logits[:, :-1]
        y, m = labels[:, 1:], labels[:, 1:] != -100
        hard = torch.nn.functional.cross_entropy(z[m], y[m], reduction="sum") / m.sum()
        h = has[:, 1:] & m
        soft = 4.0 * topk_kl(z[h], top_ids[:, 1:][h], top_lp[:, 1:][h], 2.0).sum() / m.sum()
        got = trainer.compute_loss(trainer.model, dict(batch)).item()
    assert got == pytest.approx((0.3 * soft + 0.7 * hard).item(), rel=1e-4)
    assert trainer.kd.offline.unmatched == 0


@pytest.mark.parametrize("args", [{"packing": True, "packing_strategy": "bfd_split", "max_length": 40},
                                  {"packing": False, "max_length": 30}])  # fmt: skip
def test_packed_and_truncated_sequences_find_their_teacher(run, args):
    trainer = kd_trainer(run, {"alpha": 0.5}, args={**args, "per_device_train_batch_size": 4})
    found = 0
    for batch in trainer.get_train_dataloader():
        top_ids, _ = trainer.kd.offline.batch(batch)
        found += int((top_ids[..., 0] >= 0).sum())
    assert trainer.kd.offline.unmatched == 0 and found > 0


def test_kd_training_lowers_the_soft_loss_and_logs_both_parts_with_lora(run):
    from peft import LoraConfig

    lora = LoraConfig(r=8, target_modules=["q_proj", "v_proj", "up_proj"], task_type="CAUSAL_LM")
    trainer = kd_trainer(
        run, {"alpha": 0.8, "temperature": 2.0}, args={"max_steps": 6, "learning_rate": 3e-2}, peft_config=lora
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    logs = [h for h in trainer.state.log_history if "soft_loss" in h]
    assert len(logs) == 6 and all({"hard_loss", "kd_loss", "kd_aligned"} <= set(h) for h in logs)
    assert logs[-1]["soft_loss"] < logs[0]["soft_loss"]
    assert logs[0]["kd_loss"] == pytest.approx(0.8 * logs[0]["soft_loss"] + 0.2 * logs[0]["hard_loss"], rel=1e-4)
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)


def test_online_teacher_full_vocabulary_and_gradients_reach_only_the_student(run, teacher_dir):
    trainer = kd_trainer(run, {"source": "online", "alpha": 1.0, "temperature": 2.0, "teacher": str(teacher_dir)})
    teacher = trainer.kd.online.model
    batch = first_batch(trainer)
    loss = trainer.compute_loss(trainer.model, dict(batch))
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert sum(p.grad.abs().sum() for p in trainer.model.parameters() if p.grad is not None) > 0
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        z_s = trainer.model(**inputs).logits[:, :-1]
        z_t = teacher(**inputs).logits[:, :-1]
    m = batch["labels"][:, 1:] != -100
    assert loss.item() == pytest.approx(4.0 * full_kl(z_s[m], z_t[m], 2.0).sum().item() / m.sum().item(), rel=1e-4)


def test_a_student_with_another_vocabulary_is_refused(run, tmp_path):
    other = AutoTokenizer.from_pretrained(build_tiny_model(tmp_path / "other"))
    with pytest.raises(ConfigError, match=r"sft\.kd\.teacher: .* different vocabulary"):
        kd.setup({}, "sft.kd", tokenizer=other, student="x", input_dir=run["root"] / "build",
                 train=Dataset.from_list(run["rows"]), eval=None, args=sft_args(run))  # fmt: skip


def test_a_missing_generate_folder_is_named(run, tmp_path):
    with pytest.raises(ConfigError, match=r"sft\.kd\.logprobs_dir: .*nowhere"):
        kd.setup({"logprobs_dir": str(tmp_path / "nowhere")}, "sft.kd", tokenizer=run["tok"], student="x",
                 input_dir=None, train=Dataset.from_list(run["rows"]), eval=None, args=sft_args(run))  # fmt: skip


def test_sft_stage_with_a_kd_section(run):
    """Through `r1distill.train.sft.run`: RUN_DIR/build in, sidecars from RUN_DIR/generate, a model out."""
    from r1distill.train.sft import SFTStageConfig
    from r1distill.train.sft import run as sft_run

    build = build_dir(run)
    trl = {"max_steps": 2, "per_device_train_batch_size": 4, "packing": True, "max_length": 256, "save_steps": 1}
    cfg = SFTStageConfig(model=str(run["student"]), trl=trl, kd={"alpha": 0.5, "temperature": 2.0})
    manifest = sft_run(cfg, build, run["root"] / "sft")
    assert manifest["steps"] == 2 and (run["root"] / "sft" / "manifest.json").exists()
    history = json.loads((run["root"] / "sft" / "trainer_state.json").read_text())["log_history"]
    logged = [h for h in history if "soft_loss" in h]
    assert len(logged) == 2 and all(h["kd_aligned"] > 0.7 for h in logged)
    AutoModelForCausalLM.from_pretrained(run["root"] / "sft")


@pytest.mark.slow
def test_kd_under_deepspeed_zero2_with_two_processes(run):
    import os
    import subprocess

    import yaml
    from test_sft_launch import accelerate

    build = build_dir(run)
    trl = {"max_steps": 3, "per_device_train_batch_size": 2, "packing": True, "max_length": 128}
    section = {"model": str(run["student"]), "deepspeed": "zero2", "kd": {"alpha": 0.5}, "trl": trl}
    recipe = run["root"] / "zero2.yaml"
    recipe.write_text(yaml.safe_dump({"name": "zero2", "run_dir": str(run["root"]), "sft": section}))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    cmd = accelerate("-c", str(recipe), "-i", str(build), "-o", str(run["root"] / "sft_zero2"))
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((run["root"] / "sft_zero2" / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["steps"] == 3
    history = json.loads((run["root"] / "sft_zero2" / "trainer_state.json").read_text())["log_history"]
    assert [h["kd_aligned"] > 0.7 for h in history if "soft_loss" in h] == [True] * 3
