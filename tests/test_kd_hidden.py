"""Hidden-state matching in KDTrainer (`sft.kd.hidden`): the loss against cosine / MSE by hand, packing, gradients
into the projection and the student only (LoRA too), the projection left out of the saved model, bad maps refused.

Tiny random Qwen2 models sharing one locally trained tokenizer: a 2-layer student, a 4-layer teacher of the same
width (no projection, as for a layer-pruned student) and a 4-layer teacher of another width (a projection)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2Config, Qwen2ForCausalLM
from trl import SFTConfig

from r1distill.core.config import ConfigError
from r1distill.generate.problems import arithmetic
from r1distill.testing.models import build_tiny_model
from r1distill.train import kd
from r1distill.train.kd import hidden

REPO = Path(__file__).resolve().parents[1]


def teacher_like(student_dir, out_dir, layers: int, width: int, seed: int = 1):
    """A random Qwen2 with the student's tokenizer and another depth / width."""
    tok = AutoTokenizer.from_pretrained(student_dir)
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(tok), hidden_size=width, intermediate_size=2 * width, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=True)  # fmt: skip
    Qwen2ForCausalLM(cfg).save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("hidden")
    student = build_tiny_model(root / "student")
    rows = []
    for p in arithmetic(8, seed=3):
        answer = f"<think>\n{p['solution']}\n</think>\n\nThe answer is \\boxed{{{p['answer']}}}."
        rows.append({"messages": [{"role": "user", "content": p["problem"]}, {"role": "assistant", "content": answer}]})
    return {
        "root": root,
        "student": student,
        "same": teacher_like(student, root / "teacher_same", layers=4, width=32),
        "wide": teacher_like(student, root / "teacher_wide", layers=4, width=48),
        "tok": AutoTokenizer.from_pretrained(student),
        "rows": rows,
    }


def sft_args(models, **kw):
    base = dict(output_dir=str(models["root"] / "ckpt"), use_cpu=True, bf16=False, report_to="none",
                assistant_only_loss=True, per_device_train_batch_size=8, logging_steps=1, save_strategy="no",
                max_steps=1, learning_rate=1e-3, seed=0, max_length=256)  # fmt: skip
    return SFTConfig(**{**base, **kw})


def trainer_for(models, teacher: str, hidden_cfg: dict, alpha: float = 0.0, args: dict | None = None, **kw):
    args = sft_args(models, **(args or {}))
    raw = {"source": "online", "teacher": str(models[teacher]), "alpha": alpha, "hidden": hidden_cfg}
    cls, train, _, extra = kd.setup(raw, "sft.kd", tokenizer=models["tok"], student=str(models["student"]),
                                    input_dir=None, train=Dataset.from_list(models["rows"]), eval=None,
                                    args=args)  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(models["student"])
    return cls(model=model, args=args, train_dataset=train, processing_class=models["tok"], **extra, **kw)


def first_batch(trainer):
    return trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))


def by_hand(kind: str, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if kind == "cosine":
        return 1 - (s * t).sum(-1) / (s.norm(dim=-1) * t.norm(dim=-1))
    return ((s - t) ** 2).sum(-1) / s.shape[-1]


@pytest.mark.parametrize(("kind", "packing"), [("cosine", False), ("mse", True)])
def test_the_loss_is_cosine_or_mse_by_hand_on_the_assistant_tokens(models, kind, packing):
    trainer = trainer_for(models, "same", {"loss": kind, "weight": 0.7}, args={"packing": packing})
    assert trainer.matcher.mapping == {1: 2, 2: 4} and not len(trainer.matcher.proj)  # same width: no projection
    batch = first_batch(trainer)
    # No cache: with one, a packed row's sequences would see each other (the mask then ignores position_ids).
    inputs = {**{k: v for k, v in batch.items() if k != "labels"}, "use_cache": False}
    trainer.model.train()  # the step's metrics go to the train log
    with torch.no_grad():
        got = trainer.compute_loss(trainer.model, dict(batch)).item()
        s = trainer.model(**inputs, output_hidden_states=True)
        t = trainer.kd.hidden_teacher.model(**inputs, output_hidden_states=True).hidden_states
    m = batch["labels"][:, 1:] != -100  # the positions that predict an assistant token
    assert m.sum() < m.numel() * 0.9  # the prompts (and padding) are left out
    n = m.sum()
    hard = torch.nn.functional.cross_entropy(s.logits[:, :-1][m], batch["labels"][:, 1:][m], reduction="sum") / n
    feat = sum(by_hand(kind, s.hidden_states[i][:, :-1][m], t[j][:, :-1][m]) for i, j in ((1, 2), (2, 4))) / 2
    assert got == pytest.approx((hard + 0.7 * feat.sum() / n).item(), rel=1e-5)
    assert trainer._metrics["train"]["hidden_loss"][-1] == pytest.approx((feat.sum() / n).item(), rel=1e-5)


def test_gradients_reach_the_projection_and_the_student_never_the_teacher(models):
    trainer = trainer_for(models, "wide", {"loss": "mse", "layers": {0: 0, 2: 3}}, alpha=0.5)
    assert set(trainer.matcher.proj) == {"0", "2"} and trainer.matcher.proj["2"].weight.shape == (48, 32)
    trainer.compute_loss(trainer.model, dict(first_batch(trainer))).backward()
    teacher = trainer.kd.hidden_teacher.model
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert all(p.grad.abs().sum() > 0 for p in trainer.matcher.parameters())
    student = [p for n, p in trainer.model.named_parameters() if not n.startswith("kd_hidden")]
    assert sum(p.grad.abs().sum() for p in student if p.grad is not None) > 0
    # The optimizer trains the projection with the student.
    trainer.create_optimizer()
    in_opt = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert all(id(p) in in_opt for p in trainer.matcher.parameters())


def test_lora_training_lowers_the_hidden_loss_and_the_saved_model_has_no_projection(models, tmp_path):
    from peft import LoraConfig

    lora = LoraConfig(r=8, target_modules=["q_proj", "v_proj", "up_proj"], task_type="CAUSAL_LM")
    trainer = trainer_for(models, "wide", {"loss": "cosine", "weight": 2.0}, alpha=0.5,
                          args={"max_steps": 8, "learning_rate": 3e-2}, peft_config=lora)  # fmt: skip
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    logs = [h for h in trainer.state.log_history if "hidden_loss" in h]
    assert len(logs) == 8 and logs[-1]["hidden_loss"] < logs[0]["hidden_loss"]
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n or n.startswith("kd_hidden") for n in changed)
    assert any(n.startswith("kd_hidden") for n in changed)
    trainer.save_model(str(tmp_path / "adapter"))
    with safe_open(str(tmp_path / "adapter" / "adapter_model.safetensors"), "pt") as f:
        assert f.keys() and not any("kd_hidden" in k for k in f.keys())
    assert hasattr(trainer.model, "kd_hidden")  # still attached after the save


@pytest.fixture(scope="module")
def build(models):
    """RUN_DIR/build as the build stage leaves it (parquet + manifest)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from r1distill.core.store import write_manifest

    build = models["root"] / "run" / "build"
    (build / "data").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(models["rows"]), build / "data" / "train-00000-of-00001.parquet")
    write_manifest(build, {"stage": "build", "rows": len(models["rows"])})
    return build


def test_sft_stage_with_a_hidden_section_saves_the_student_alone(models, build):
    """Through `r1distill.train.sft.run` from a recipe section: a full model out, without the projection weights."""
    from r1distill.train.sft import SFTStageConfig
    from r1distill.train.sft import run as sft_run

    section = {"source": "online", "teacher": str(models["wide"]), "alpha": 0.5, "hidden": {"loss": "mse"}}
    trl = {"max_steps": 2, "per_device_train_batch_size": 4, "packing": True, "max_length": 256, "use_cpu": True}
    out = models["root"] / "run" / "sft"
    manifest = sft_run(SFTStageConfig(model=str(models["student"]), trl=trl, kd=section), build, out)
    assert manifest["kd"]["hidden_loss"] > 0
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert len([h for h in history if "hidden_loss" in h]) == 2
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and not any("kd_hidden" in k for k in keys)
    AutoModelForCausalLM.from_pretrained(out)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"layers": {3: 1}}, r"sft\.kd\.hidden\.layers: 3: 1: the student has no layer 3 \(it has 0 = embeddings"),
        ({"layers": {1: 9}}, r"sft\.kd\.hidden\.layers: 1: 9: the teacher has no layer 9"),
        ({"loss": "l1"}, r"sft\.kd\.hidden\.loss: must be one of cosine, mse"),
        ({"projection": False}, r"sft\.kd\.hidden\.projection: false, but the student's hidden size 32 differs"),
        ({"layer": {1: 1}}, r"sft\.kd\.hidden: unknown key 'layer'; valid keys: weight, loss, layers, projection"),
    ],
)
def test_a_bad_hidden_section_is_refused(models, section, message):
    with pytest.raises(ConfigError, match=message):
        trainer_for(models, "wide", section)


def test_a_bad_map_is_one_line_and_exit_2_from_the_command_line(models, build):
    recipe = models["root"] / "bad.yaml"
    section = {"source": "online", "teacher": str(models["same"]), "hidden": {"layers": {5: 2}}}
    recipe.write_text(json.dumps({"run_dir": str(models["root"] / "badrun"), "sft": {
        "model": str(models["student"]), "dataset": str(build), "kd": section,
        "trl": {"max_steps": 1, "use_cpu": True}}}))  # fmt: skip
    proc = subprocess.run([sys.executable, "-m", "r1distill", "sft", "-c", str(recipe)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert last.startswith("r1distill sft: error: sft.kd.hidden.layers: 5: 2: the student has no layer 5")
    assert not (models["root"] / "badrun" / "sft" / "manifest.json").exists()


def test_default_map_is_evenly_spaced():
    assert hidden.default_map(15, 30) == {i: 2 * i for i in range(1, 16)}
    assert hidden.default_map(2, 2) == {1: 1, 2: 2}
    assert hidden.default_map(3, 8) == {1: 3, 2: 5, 3: 8}
