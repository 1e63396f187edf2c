import os
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    from r1distill.testing.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "qwen2", arch="qwen2")


def test_tiny_tokenizer_matches_its_tokenizer_json(tiny_qwen):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    auto = AutoTokenizer.from_pretrained(tiny_qwen)
    raw = Tokenizer.from_file(str(tiny_qwen / "tokenizer.json"))
    text = "What's 12 + 30?\n<think>\nAdd: 12+30 = 42.\n</think>\n\nThe answer is \\boxed{42}. Ünïcode 数学"
    assert auto(text, add_special_tokens=False).input_ids == raw.encode(text, add_special_tokens=False).ids
    assert auto.decode(auto(text, add_special_tokens=False).input_ids) == text


def test_chat_template_keeps_last_think_and_masks_assistant(tiny_qwen):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_qwen)
    msgs = [
        {"role": "user", "content": "1+1?"},
        {"role": "assistant", "content": "<think>\nold reasoning\n</think>\n\n2"},
        {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "<think>\nadd two and two\n</think>\n\n4"},
    ]
    text = tok.apply_chat_template(msgs, tokenize=False)
    assert "old reasoning" not in text  # earlier turns lose their reasoning, as in R1's template
    assert "<think>\nadd two and two\n</think>\n\n4<|im_end|>" in text
    enc = tok.apply_chat_template(msgs, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = enc["input_ids"], enc["assistant_masks"]
    trained = tok.decode([i for i, m in zip(ids, mask, strict=True) if m])
    assert "add two and two" in trained and trained.endswith("<|im_end|>") and "2+2?" not in trained


@pytest.mark.parametrize("arch", ["qwen2", "llama"])
def test_tiny_model_trains_a_step(tmp_path, arch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from r1distill.testing.models import build_tiny_model

    path = build_tiny_model(tmp_path / arch, arch=arch)
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.model_type == arch
    assert model.generation_config.eos_token_id == tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    batch = tok(["<think>\n1+1=2\n</think>\n\n2<|im_end|>"], return_tensors="pt")
    loss = model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    assert torch.isfinite(loss) and any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


CONVERT = "from r1distill.core.models import default_teacher; print(default_teacher())"


@pytest.mark.slow
def test_two_processes_converting_at_once_agree(tmp_path):
    """Both start on an empty cache; the lock makes one convert and the other wait; no half-written model."""
    env = {**os.environ, "R1DISTILL_HOME": str(tmp_path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", CONVERT], env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)
    ]
    outs = [p.communicate(timeout=300)[0].strip().splitlines()[-1] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0] == outs[1]
    models_dir = tmp_path / "models"
    assert sorted(p.name for p in models_dir.iterdir() if not p.name.endswith(".lock")) == ["SmolLM2-135M-Instruct"]

    from transformers import AutoConfig, AutoTokenizer

    cfg = AutoConfig.from_pretrained(outs[0])
    assert cfg.model_type == "llama" and not hasattr(cfg, "quantization_config")
    tok = AutoTokenizer.from_pretrained(outs[0])
    assert "<|im_start|>assistant" in tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], add_generation_prompt=True, tokenize=False
    )


def test_model_reference_errors(tmp_path):
    from r1distill.core.models import resolve_model
    from r1distill.core.store import StageError

    with pytest.raises(StageError, match="no such folder"):
        resolve_model(str(tmp_path / "nope"))
    with pytest.raises(StageError, match="has no config.json"):
        resolve_model(str(tmp_path))
    os.environ["HF_HUB_OFFLINE"] = "1"
    with pytest.raises(StageError, match="not in the local Hub cache"):
        resolve_model("someorg/some-model-that-is-not-cached")
