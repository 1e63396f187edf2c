"""The SFT chat-template preflight on real tokenizers: a good template passes with the mask on the reasoning, the answer
and EOS only; templates that strip `<think>`, lack generation markers, leak the prompt or leave EOS untrained, and
pad == EOS, are each caught with a message naming the field to change; and the mask it predicts is TRL's."""

from __future__ import annotations

import logging

import pytest
from transformers import AutoTokenizer, GenerationConfig

from r1distill.core.config import ConfigError
from r1distill.core.store import StageError
from r1distill.train import preflight

ANSWER = "<think>\nLet me compute. 12 + 30 = 42.\n</think>\n\nThe answer is \\boxed{42}."
ROW = [
    {"role": "system", "content": "Please reason step by step."},
    {"role": "user", "content": "What is 12 + 30?"},
    {"role": "assistant", "content": ANSWER},
]

# ChatML variants of chatml_think, each broken in one way.
_USER = "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
_LOOP = "{%- for message in messages %}{%- if message['role'] == 'assistant' %}{}{%- else %}" + _USER + "{%- endif %}"
# DeepSeek-R1-Distill's template drops everything up to `</think>`, in the last turn too.
STRIPS_THINK = (
    _LOOP.replace(
        "{}",
        "{%- set content = message['content'] %}{%- if '</think>' in content %}"
        "{%- set content = content.split('</think>')[-1] %}{%- endif %}"
        "{{- '<|im_start|>assistant\\n' }}{%- generation %}{{- content + '<|im_end|>' }}{%- endgeneration %}",
    )
    + "{%- endfor %}"
)
EOS_OUTSIDE = (
    _LOOP.replace(
        "{}",
        "{{- '<|im_start|>assistant\\n' }}{%- generation %}{{- message['content'] }}{%- endgeneration %}"
        "{{- '<|im_end|>\\n' }}",
    )
    + "{%- endfor %}"
)
MASKS_PROMPT = (
    "{%- generation %}"
    + _LOOP.replace("{}", "{{- '<|im_start|>assistant\\n' + message['content'] + '<|im_end|>\\n' }}")
    + "{%- endfor %}{%- endgeneration %}"
)
NO_MARKERS_ALPACA = (
    "{%- for message in messages %}{%- if message['role'] == 'user' %}{{- '### Instruction:\\n' + message['content'] }}"
    "{%- else %}{{- '\\n\\n### Response:\\n' + message['content'] + eos_token }}{%- endif %}{%- endfor %}"
)
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from r1distill.testing.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("preflight") / "qwen2", arch="qwen2")


@pytest.fixture
def tok(tiny_dir):
    return AutoTokenizer.from_pretrained(tiny_dir)


def trained_text(tokenizer, report) -> str:
    return tokenizer.decode([i for i, m in zip(report.input_ids, report.assistant_mask, strict=True) if m])


def test_good_template_trains_reasoning_answer_and_eos_only(tok):
    report = preflight.check(tok, ROW, generation_config=GenerationConfig(eos_token_id=tok.eos_token_id))
    assert report.ok, report.summary()
    assert trained_text(tok, report) == ANSWER + "<|im_end|>"
    assert "chatml_think (shipped)" in report.summary() and "PASS" in report.summary()
    report.raise_if_failed()


@pytest.mark.parametrize(
    "template, expected",
    [
        (STRIPS_THINK, "drops the <think> block"),
        (EOS_OUTSIDE, "the end-of-turn token is never trained"),
        (MASKS_PROMPT, "the assistant mask covers"),
        (NO_MARKERS_ALPACA, "has no {% generation %} markers"),
    ],
    ids=["strips_think", "eos_outside_mask", "masks_prompt", "no_markers"],
)
def test_broken_template_is_caught_with_the_field_to_change(tok, template, expected):
    tok.chat_template = template
    report = preflight.check(tok, ROW)
    assert not report.ok and any(expected in p for p in report.problems), report.problems
    assert all(p.startswith("sft.chat_template:") for p in report.problems), report.problems
    with pytest.raises(StageError, match="sft preflight failed"):
        report.raise_if_failed()


def test_unrecognisable_template_without_markers_is_refused_with_the_fix(tok):
    tok.chat_template = NO_MARKERS_ALPACA
    with pytest.raises(ConfigError) as e:
        preflight.prepare_tokenizer(tok, None, "sft.chat_template")
    msg = str(e.value)
    assert "sft.chat_template: chatml_think" in msg and "{% generation %}" in msg
    assert "sft.trl.assistant_only_loss: false" in msg and "llama3_think" in msg


def test_bundled_chatml_without_markers_is_replaced_and_then_passes(teacher_dir, caplog):
    """SmolLM2's own template is ChatML without markers (TRL cannot patch it): it is replaced by chatml_think. The
    bundled folder's EOS is <|im_end|> and its pad <|endoftext|> (models.py fixes the GGUF's <|im_start|> EOS), so the
    converted teacher is a valid student as is; put the GGUF's tokens back and the EOS/pad checks fire."""
    from trl.chat_template_utils import get_training_chat_template

    smol = AutoTokenizer.from_pretrained(teacher_dir)
    with pytest.raises(ValueError):
        get_training_chat_template(smol)
    with caplog.at_level(logging.WARNING, logger="r1distill.train.preflight"):
        preflight.prepare_tokenizer(smol, None, "sft.chat_template")
    assert smol.chat_template == preflight.load_template("chatml_think")
    assert "replaced by the shipped 'chatml_think'" in caplog.text
    gen = GenerationConfig.from_pretrained(teacher_dir)
    report = preflight.check(smol, ROW, generation_config=gen)
    assert report.ok and not report.warnings, report.summary()
    assert trained_text(smol, report) == ANSWER + "<|im_end|>"

    smol.eos_token, smol.pad_token = "<|im_start|>", None  # what the GGUF metadata says
    report = preflight.check(smol, ROW, generation_config=gen)
    assert any("set `sft.trl.pad_token: '<|endoftext|>'`" in p for p in report.problems), report.problems
    assert any("set `sft.trl.eos_token: '<|im_end|>'`" in w for w in report.warnings), report.warnings


def test_pad_equal_to_eos_is_caught(tok):
    report = preflight.check(tok, ROW, pad_token="<|im_end|>")
    (problem,) = report.problems
    assert problem.startswith("sft.trl.pad_token:") and "is the EOS" in problem
    assert "set `sft.trl.pad_token: '<|endoftext|>'`" in problem
    tok.pad_token = None  # TRL then pads with the EOS
    assert not preflight.check(tok, ROW).ok


def test_eos_that_is_not_the_end_of_turn_is_caught(tok):
    tok.eos_token = "<|endoftext|>"  # a base model's EOS, while the template ends turns with <|im_end|>
    gen = GenerationConfig(eos_token_id=tok.eos_token_id)
    report = preflight.check(tok, ROW, pad_token="<think>", generation_config=gen)
    assert any(
        p.startswith("sft.trl.eos_token:") and "set `sft.trl.eos_token: '<|im_end|>'`" in p for p in report.problems
    ), report.problems
    assert any("occurs in the trained tokens" in p for p in report.problems), report.problems  # pad = <think>
    # SFTConfig.eos_token fixes the tokenizer and (as TRL does) the generation config.
    assert preflight.check(tok, ROW, eos_token="<|im_end|>", generation_config=gen).ok


def test_generation_config_without_the_eos_is_flagged_and_fixed(tok):
    gen = GenerationConfig(eos_token_id=0)
    report = preflight.check(tok, ROW, generation_config=gen)
    assert any("generation_config.json eos_token_id [0] lacks" in w for w in report.warnings), report.warnings
    fixed = preflight.fix_generation_config(gen, tok)
    assert fixed is not gen and fixed.eos_token_id == [tok.eos_token_id, 0] and gen.eos_token_id == 0
    assert not preflight.check(tok, ROW, generation_config=fixed).warnings
    assert preflight.fix_generation_config(fixed, tok) is fixed


def test_base_tokenizer_without_template_gets_a_think_template(tok):
    tok.chat_template = None
    preflight.prepare_tokenizer(tok, None, "sft.chat_template")
    assert tok.chat_template == preflight.load_template("chatml_think")
    tok.add_special_tokens({"additional_special_tokens": LLAMA3_SPECIALS})
    tok.chat_template = None
    preflight.prepare_tokenizer(tok, None, "sft.chat_template")
    assert tok.chat_template == preflight.load_template("llama3_think")


def test_llama3_think_masks_through_eot(tok):
    tok.add_special_tokens({"additional_special_tokens": LLAMA3_SPECIALS})
    tok.eos_token, tok.bos_token = "<|eot_id|>", "<|begin_of_text|>"
    # Meta's Llama-3 layout without markers is recognised and swapped for llama3_think.
    tok.chat_template = (
        preflight.load_template("llama3_think").replace("{%- generation %}", "").replace("{%- endgeneration %}", "")
    )
    preflight.prepare_tokenizer(tok, None, "sft.chat_template")
    report = preflight.check(tok, ROW)
    assert report.ok, report.summary()
    assert trained_text(tok, report) == ANSWER + "<|eot_id|>"
    assert tok.decode(report.input_ids).startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>")


def test_named_templates(tok):
    assert {"chatml_think", "llama3_think", "qwen2_5_think"} <= set(preflight.template_names())
    with pytest.raises(ConfigError, match="unknown chat template 'chatml'.*chatml_think"):
        preflight.prepare_tokenizer(tok, "chatml", "sft.chat_template")
    preflight.prepare_tokenizer(tok, "qwen2_5_think", "sft.chat_template")
    report = preflight.check(tok, ROW[1:])
    assert report.ok, report.summary()
    assert tok.decode(report.input_ids).startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.")


def test_preflight_mask_is_the_mask_trl_trains(tmp_path, tiny_dir, teacher_dir):
    """TRL's own dataset preparation (no step) on one row: the tokens it trains are the ones the preflight reports,
    for the tiny student's template and for SmolLM2's after prepare_tokenizer swapped it."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    from r1distill.testing.models import build_tiny_model

    args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, report_to=[], assistant_only_loss=True, max_steps=0)
    for path in (tiny_dir, build_tiny_model(tmp_path / "smol", tokenizer_dir=teacher_dir)):
        model = AutoModelForCausalLM.from_pretrained(path)
        tokenizer = preflight.prepare_tokenizer(AutoTokenizer.from_pretrained(path), None, "sft.chat_template")
        report = preflight.check(tokenizer, ROW, pad_token="<|endoftext|>")
        data = Dataset.from_list([{"messages": ROW}])
        prepared = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer).train_dataset
        (row,) = prepared
        assert row["input_ids"] == report.input_ids
        assert [int(label != -100) for label in row["labels"]] == report.assistant_mask
