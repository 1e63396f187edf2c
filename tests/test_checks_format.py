"""think_format, truncated, correct and length: one pass and one drop case per reason."""

import pytest

from r1distill.core.config import ConfigError
from r1distill.filter.checks import build_check
from r1distill.testing.samples import sample


def reason(check: str, s, **params) -> str:
    return build_check(check, params)(s).reason


def test_think_format():
    assert reason("think_format", sample()) == "ok"
    assert reason("think_format", sample(completion="just an answer")) == "no_think"
    assert reason("think_format", sample(completion="<think>still thinking")) == "think_unclosed"
    assert reason("think_format", sample(completion="<think>a</think><think>b</think>c")) == "think_multiple"
    assert reason("think_format", sample(completion="<think>a</think>b</think>c")) == "think_multiple"
    assert reason("think_format", sample(reasoning="  ")) == "empty_reasoning"
    assert reason("think_format", sample(answer="")) == "empty_answer"
    # The opening tag may have been in the prefill: `reasoning</think>answer` is well formed.
    assert reason("think_format", sample(completion="thinking here</think>\n42")) == "ok"


def test_truncated():
    assert reason("truncated", sample()) == "ok"
    assert reason("truncated", sample(meta={"finish_reason": "length"})) == "truncated"
    assert reason("truncated", sample(completion="<think>\nand then and then")) == "truncated"


def test_correct():
    assert reason("correct", sample(meta={"verify": {"correct": True}})) == "ok"
    assert reason("correct", sample(meta={"verify": {"correct": False, "reason": "wrong_answer"}})) == "incorrect"
    assert reason("correct", sample()) == "unverified"
    assert reason("correct", sample(), keep_unverified=True) == "ok"


def test_length_estimate_says_so():
    verdict = build_check("length", {"max_tokens": 100})(sample(reasoning="word " * 200))
    assert verdict.reason == "too_long"
    assert "chars/4" in verdict.details["method"]
    assert reason("length", sample(), max_tokens=100) == "ok"


def test_length_with_a_real_tokenizer(tmp_path):
    tokenizers = pytest.importorskip("tokenizers")
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "<think>": 1, "</think>": 2, "two": 3, "four": 4}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(tmp_path)
    # 30 one-character words: 30 tokens with this tokenizer, ~15 by the chars/4 estimate.
    s = sample(reasoning="x " * 30, answer="y")
    verdict = build_check("length", {"max_tokens": 25, "tokenizer": str(tmp_path)})(s)
    assert verdict.reason == "too_long" and verdict.details["method"] == "tokenizer"
    assert verdict.details["tokens"] >= 30
    assert build_check("length", {"max_tokens": 25})(s).reason == "ok"


def test_bad_parameter_names_the_check():
    with pytest.raises(ConfigError, match="think_format.*max_chars"):
        build_check("think_format", {"max_chars": 3})
    with pytest.raises(ConfigError, match="unknown check 'nope'"):
        build_check("nope", {})
