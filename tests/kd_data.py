"""A real generate folder with teacher top-k sidecars, made with transformers on the bundled SmolLM2 teacher.

Why not the vLLM engine: a test needs a handful of short samples, and the CPU engine costs 30-60 s to start on the
shared cores; the format (`r1distill.generate.logprobs.encode` into a `ShardWriter` sidecar, `meta.logprobs` in the
record) is the contract either way. The teacher samples its reasoning freely (temperature 1, so the text follows its
own distribution); the closing `</think>` and a short answer are then appended, as every kept sample has them, and
one forward pass over the whole completion gives the teacher's distribution at every completion token.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from r1distill.build.stage import to_row
from r1distill.core.records import Sample, sample_id
from r1distill.core.store import ShardWriter, write_manifest
from r1distill.generate.logprobs import encode
from r1distill.generate.problems import arithmetic

PREFILL = "<think>\n"


def teacher_run(
    teacher_dir: Path,
    out_dir: Path,
    n: int,
    k: int,
    sample: bool = False,
    max_new_tokens: int = 24,
    seed: int = 0,
    batch: int = 16,
) -> list[dict]:
    """Write `n` samples (k teacher logprobs per token) into `out_dir` like `r1distill generate`; returns the rows
    build would make of them (the datasets' rows: id, messages, meta, ...). Without `sample` the reasoning is the
    problem's worked solution (no generation: fast enough for unit tests); the logprobs are the teacher's either way."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(teacher_dir)
    model = AutoModelForCausalLM.from_pretrained(teacher_dir, dtype=torch.float32).eval()
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    tok.pad_token, tok.padding_side = "<|endoftext|>", "left"
    problems = arithmetic(n, seed=seed)
    torch.manual_seed(seed)
    rows = []
    with ShardWriter(out_dir) as writer:
        for start in range(0, n, batch):
            chunk = problems[start : start + batch]
            msgs = [[{"role": "user", "content": p["problem"]}] for p in chunk]
            prompts = [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) + PREFILL for m in msgs]
            enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
            out = None
            if sample:
                with torch.no_grad():
                    out = model.generate(**enc, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                                         max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id)  # fmt: skip
            seqs = []
            for i, p in enumerate(chunk):
                if out is None:
                    sampled = tok(p["solution"], add_special_tokens=False)["input_ids"]
                else:
                    new = out[i, enc["input_ids"].shape[1] :].tolist()
                    sampled = [t for t in new if t not in (eos, tok.pad_token_id)]
                tail = tok(f"\n</think>\n\nThe answer is \\boxed{{{p['answer']}}}.", add_special_tokens=False)
                prompt_ids = tok(prompts[i], add_special_tokens=False)["input_ids"]
                seqs.append((prompt_ids, sampled + tail["input_ids"] + [eos]))
            width = max(len(a) + len(b) for a, b in seqs)
            full = torch.tensor([a + b + [tok.pad_token_id] * (width - len(a) - len(b)) for a, b in seqs])
            mask = torch.tensor([[1] * (len(a) + len(b)) + [0] * (width - len(a) - len(b)) for a, b in seqs])
            with torch.no_grad():  # right padding: each row's positions are those of its own forward
                all_lp = torch.log_softmax(model(full, attention_mask=mask).logits.float(), -1)
            for i, p in enumerate(chunk):
                prompt_ids, ids = seqs[i]
                lp = all_lp[i, len(prompt_ids) - 1 : len(prompt_ids) + len(ids) - 1]
                top = lp.topk(k, -1)
                token_lp = lp.gather(-1, torch.tensor(ids)[:, None]).squeeze(-1)
                ids_k, lps_k = top.indices.tolist(), top.values.tolist()
                pairs = [list(zip(a, b, strict=True)) for a, b in zip(ids_k, lps_k, strict=True)]
                file, offset = writer.write_blob(encode(ids, token_lp.tolist(), pairs, k))
                completion = PREFILL + tok.decode(ids, skip_special_tokens=True)
                sid = sample_id("arith", p["id"], 0)
                sample = Sample(
                    id=sid, source="arith", row=p["id"], k=0, domain="math", problem=p["problem"],
                    messages=msgs[i], reference=p["answer"], completion=completion,
                    meta={"teacher": {"model": str(teacher_dir)}, "prefill": PREFILL, "finish_reason": "stop",
                          "logprobs": {"file": file, "offset": offset, "tokens": len(ids), "k": k},
                          "completion_tokens": len(ids)},
                )  # fmt: skip
                writer.write(sample.to_json())
                rows.append(to_row(sample, None, False))
    write_manifest(out_dir, {"stage": "generate", "samples": len(rows)})
    return rows


def tiny_student(teacher_dir: Path, out_dir: Path, seed: int = 0) -> Path:
    """A random-init Qwen2-style student with the teacher's tokenizer and a `{% generation %}` ChatML template."""
    from transformers import AutoTokenizer

    from r1distill.core.models import CHATML_THINK_TEMPLATE
    from r1distill.testing.models import build_tiny_model

    path = build_tiny_model(out_dir, arch="qwen2", tokenizer_dir=teacher_dir, seed=seed)
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = CHATML_THINK_TEMPLATE
    tok.pad_token = "<|endoftext|>"
    tok.save_pretrained(path)
    return Path(path)


def np_close(a, b, tol=1e-4) -> bool:
    return bool(np.allclose(np.asarray(a), np.asarray(b), atol=tol, rtol=tol))
