"""GPU smoke check (never in CI; skipped without CUDA): a ~0.5B student built from a config (no download) trains a few
steps with each training path, and each prints tokens/s and peak memory beside plain TRL on the same settings.

    .venv/bin/python tests/gpu/smoke.py [--steps 8] [--seq 1024]        or: pytest -s tests/gpu/smoke.py

Arms: sft bf16 with padding-free packing, sft bf16 padded, sft + soft labels (online teacher: a second model of
the same shape), and on-policy distill. Each runs through r1distill's stage (`r1distill.train.sft.run`,
`r1distill.train.distill.run`) and through plain TRL (SFTTrainer / DistillationTrainer with the same arguments), so
the two columns show what the project adds on top of TRL: they should agree within noise (KD has no plain-TRL arm:
TRL has no offline/online soft-label SFT; its column is plain SFT on the same data, the cost of the KD loss).
The file is not named test_*.py, so the default test run never collects it.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

try:
    import torch

    CUDA = torch.cuda.is_available()
except ImportError:  # pragma: no cover - torch is a dependency
    CUDA = False

# Qwen2.5-0.5B's shape with the bundled SmolLM2 tokenizer (49,152 tokens): ~0.4B parameters, random weights.
SHAPE = dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
             num_key_value_heads=2, max_position_embeddings=4096, tie_word_embeddings=True)  # fmt: skip


def build_student(out: Path, seed: int = 0) -> Path:
    """A random Qwen2 model of SHAPE with the bundled teacher's tokenizer (and the chatml_think template)."""
    from transformers import AutoTokenizer, GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from r1distill.core.models import CHATML_THINK_TEMPLATE, default_teacher

    tok = AutoTokenizer.from_pretrained(default_teacher())
    tok.chat_template = CHATML_THINK_TEMPLATE
    torch.manual_seed(seed)
    cfg = Qwen2Config(vocab_size=len(tok), eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **SHAPE)
    model = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def dataset_folder(out: Path, rows: int, seq: int) -> Path:
    """A parquet folder of `messages` rows of mixed lengths up to ~`seq` tokens (what packing is for)."""
    import datasets

    from r1distill.generate.problems import arithmetic

    data = []
    for i, r in enumerate(arithmetic(rows, seed=5)):
        steps = " ".join([r["solution"]] * (4 + (i * 37) % max(seq // 12, 8)))
        answer = f"<think>\n{steps}\n</think>\n\nThe answer is \\boxed{{{r['answer']}}}."
        data.append({"messages": [{"role": "user", "content": r["problem"]}, {"role": "assistant", "content": answer}]})
    (out / "data").mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(data).to_parquet(out / "data" / "train-00000.parquet")
    return out


def measure(fn) -> dict[str, float]:
    """Run `fn() -> tokens trained`; its tokens/s and peak GPU memory (GiB)."""
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.monotonic()
    tokens = fn()
    wall = time.monotonic() - t0
    return {"tokens_per_s": round(tokens / wall, 1), "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            "wall_s": round(wall, 1)}  # fmt: skip


def sft_trl(cfg, data: Path, out: Path) -> int:
    """Plain TRL SFTTrainer with the stage's exact SFTConfig (built the same way)."""
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from r1distill.train import common, sft

    args = common.trainer_args(SFTConfig, cfg.trl, out, None, "sft.trl", **sft.TRL_DEFAULTS)
    train = load_dataset("parquet", data_files=str(data / "data" / "*.parquet"), split="train")
    trainer = SFTTrainer(model=cfg.model, args=args, train_dataset=train,
                         processing_class=AutoTokenizer.from_pretrained(cfg.model))  # fmt: skip
    trainer.train()
    return trainer.state.num_input_tokens_seen or 0


def distill_trl(cfg, out: Path) -> int:
    from transformers import AutoTokenizer
    from trl import DistillationConfig, DistillationTrainer

    from r1distill.generate import stage as generate
    from r1distill.generate.prompts import load_prompts
    from r1distill.train import common, distill

    tok = AutoTokenizer.from_pretrained(cfg.model, padding_side="left")
    gen = generate.GenerateConfig(sources=cfg.sources, model=cfg.model, prefill=cfg.prefill)
    ds = distill.build_dataset(load_prompts(cfg.sources, None, "distill.sources"), gen, tok)
    args = common.trainer_args(DistillationConfig, cfg.trl, out, None, "distill.trl", **distill.TRL_DEFAULTS)
    trainer = DistillationTrainer(model=cfg.model, teacher_model=cfg.teacher, args=args, train_dataset=ds,
                                  processing_class=tok)  # fmt: skip
    trainer.train()
    return trainer.state.num_input_tokens_seen or 0


def run_smoke(steps: int, seq: int, work: Path) -> dict[str, dict]:
    from r1distill.core.config import from_dict
    from r1distill.core.store import read_manifest
    from r1distill.train import distill, sft

    student, teacher = build_student(work / "student"), build_student(work / "teacher", seed=1)
    data = dataset_folder(work / "data", rows=steps * 16, seq=seq)
    base = {"max_steps": steps, "per_device_train_batch_size": 8, "max_length": seq, "bf16": True,
            "learning_rate": 1e-5, "save_strategy": "no", "model_init_kwargs": {"dtype": "bfloat16"}}  # fmt: skip
    sft_arms = {
        "sft packed (padding-free)": {"packing": True, "padding_free": True},
        "sft padded": {"packing": False},
    }
    results = {}
    for name, extra in sft_arms.items():
        cfg = from_dict(sft.Config, {"model": str(student), "dataset": str(data), "trl": {**base, **extra}}, "sft")
        out = work / name.split()[1]
        ours = measure(lambda cfg=cfg, out=out: sft.run(cfg, None, out / "r1d", force=True)["train_tokens"])
        results[name] = {"r1distill": ours, "trl": measure(lambda cfg=cfg, out=out: sft_trl(cfg, data, out / "trl"))}
    kd = {"source": "online", "teacher": str(teacher), "alpha": 0.5}
    cfg = from_dict(sft.Config, {"model": str(student), "dataset": str(data), "kd": kd,
                                 "trl": {**base, "packing": False}}, "sft")  # fmt: skip
    results["sft + kd (online teacher)"] = {
        "r1distill": measure(lambda: sft.run(cfg, None, work / "kd", force=True)["train_tokens"]),
        "trl": results["sft padded"]["trl"],
    }
    dtrl = {"max_steps": steps, "per_device_train_batch_size": 8, "max_completion_length": 256, "bf16": True,
            "learning_rate": 1e-6, "save_strategy": "no", "model_init_kwargs": {"dtype": "bfloat16"},
            "teacher_model_init_kwargs": {"dtype": "bfloat16"}}  # fmt: skip
    sources = [{"name": "arith", "builtin": "arithmetic", "count": steps * 8}]
    dcfg = from_dict(distill.Config, {"model": str(student), "teacher": str(teacher), "sources": sources,
                                      "trl": dtrl}, "distill")  # fmt: skip

    def ours_distill() -> int:
        distill.run(dcfg, None, work / "distill", force=True)
        state = json.loads((work / "distill" / "trainer_state.json").read_text())
        return state.get("num_input_tokens_seen") or 0

    results["distill (on-policy)"] = {"r1distill": measure(ours_distill),
                                      "trl": measure(lambda: distill_trl(dcfg, work / "distill-trl"))}  # fmt: skip
    assert read_manifest(work / "distill")["steps"] == steps
    return results


def print_table(results: dict[str, dict]) -> None:
    print(f"{'arm':<28} {'r1distill tok/s':>16} {'peak GiB':>9} {'TRL tok/s':>10} {'peak GiB':>9}")
    for name, r in results.items():
        ours, trl = r["r1distill"], r["trl"]
        print(f"{name:<28} {ours['tokens_per_s']:>16} {ours['peak_gib']:>9} {trl['tokens_per_s']:>10} "
              f"{trl['peak_gib']:>9}")  # fmt: skip


@pytest.mark.skipif(not CUDA, reason="GPU smoke check: needs CUDA")
def test_gpu_smoke(tmp_path):
    results = run_smoke(steps=4, seq=1024, work=tmp_path)
    print_table(results)
    assert all(r["r1distill"]["tokens_per_s"] > 0 for r in results.values())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--seq", type=int, default=1024)
    a = p.parse_args()
    if not CUDA:
        print("skipped: no CUDA device (this smoke check needs one GPU)")
        return 0
    with tempfile.TemporaryDirectory(prefix="r1d-gpu-smoke-") as work:
        results = run_smoke(a.steps, a.seq, Path(work))
    print_table(results)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
