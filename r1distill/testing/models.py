"""Tiny models and tokenizers built locally, for tests and benchmarks (never imported by a stage).

`build_tiny_model(folder, arch)` writes a random-init Qwen2/Llama-style model of a few hundred thousand parameters
with a real tokenizer (trained on a small corpus, or copied from `tokenizer_dir`), loadable by transformers, TRL and
vLLM like any Hub model.
"""

from __future__ import annotations

from pathlib import Path

from r1distill.core.models import CHATML_THINK_TEMPLATE

# Qwen2's pre-tokenizer split pattern: a local qwen2 tokenizer must use it or AutoTokenizer ids drift.
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>"]


def build_tokenizer(out_dir: str | Path, corpus: list[str] | None = None, vocab_size: int = 512):
    """Train a small byte-level BPE tokenizer locally (Qwen split regex, ChatML + think special tokens)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    corpus = corpus or _default_corpus()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", bos_token=None, unk_token=None
    )
    fast.chat_template = CHATML_THINK_TEMPLATE
    fast.save_pretrained(out_dir)
    return fast


def _default_corpus() -> list[str]:
    from r1distill.generate.problems import arithmetic

    lines = []
    for row in arithmetic(200, seed=1):
        lines.append(row["problem"])
        lines.append(
            f"<think>\nLet me compute. {row['solution']}\n</think>\n\nThe answer is \\boxed{{{row['answer']}}}."
        )
    return lines


def build_tiny_model(out_dir: str | Path, arch: str = "qwen2", tokenizer_dir: str | Path | None = None, seed: int = 0):
    """A random tiny causal LM (~0.1M params) with a local tokenizer, saved as an HF folder. Returns its path.

    `tokenizer_dir` reuses an existing tokenizer (e.g. the bundled teacher's, for same-vocabulary distillation);
    otherwise one is trained by `build_tokenizer`.
    """
    import torch
    from transformers import (
        AutoTokenizer,
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
        Qwen2Config,
        Qwen2ForCausalLM,
    )

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if tokenizer_dir:
        tok = AutoTokenizer.from_pretrained(tokenizer_dir)
        tok.save_pretrained(out_dir)
    else:
        tok = build_tokenizer(out_dir)
    eos = tok.eos_token_id
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos
    shape = dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        eos_token_id=eos,
        pad_token_id=pad,
        bos_token_id=tok.bos_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    if arch == "qwen2":
        model = Qwen2ForCausalLM(Qwen2Config(**shape))
    elif arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(**shape))
    else:
        raise ValueError(f"arch must be 'qwen2' or 'llama', got {arch!r}")
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad, bos_token_id=tok.bos_token_id)
    model.save_pretrained(out_dir)
    return out_dir
