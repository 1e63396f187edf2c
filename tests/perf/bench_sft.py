"""Train tokens/s of `r1distill sft` vs a plain TRL `SFTTrainer` script with the same model, data and settings.

    .venv/bin/python tests/perf/bench_sft.py [--steps 40] [--hidden 256] [--layers 4] [--rounds 2] [--packing]

The student is a random Qwen2 of the given shape on a locally trained tokenizer; the dataset is the arithmetic
`<think>` set in the build stage's layout. Both sides train the same number of steps with the same SFTConfig
(assistant-only loss, batch, length, learning rate); only `trainer.train()` is timed, and tokens are TRL's own
`num_tokens` count. r1distill adds its preflight, resume check and final save around that loop, reported apart.
Rounds alternate the order to cancel drift. Target (issue 7): ratio >= 0.97.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from knobs import knobs  # noqa: E402  (tests/perf/knobs.py)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: sft_data


def make_student(folder: Path, hidden: int, layers: int) -> Path:
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    from r1distill.testing.models import build_tokenizer

    tok = build_tokenizer(folder)
    torch.manual_seed(0)
    shape = {"hidden_size": hidden, "intermediate_size": hidden * 3, "num_hidden_layers": layers,
             "num_attention_heads": max(1, hidden // 64), "num_key_value_heads": 1}  # fmt: skip
    config = Qwen2Config(vocab_size=len(tok), eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                         tie_word_embeddings=True, **shape)  # fmt: skip
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(folder)
    return folder


def plain(student: Path, build: Path, out: Path, trl: dict) -> tuple[float, int]:
    """What a user would write by hand: load the parquet, SFTTrainer, train."""
    import datasets
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    train = datasets.load_dataset("parquet", data_files=str(build / "data" / "train-*.parquet"), split="train")
    args = SFTConfig(output_dir=str(out), use_cpu=True, bf16=False, report_to="none", logging_steps=1,
                     save_strategy="no", assistant_only_loss=True, **trl)  # fmt: skip
    trainer = SFTTrainer(model=str(student), args=args, train_dataset=train.select_columns(["messages"]),
                         processing_class=AutoTokenizer.from_pretrained(student))  # fmt: skip
    t0 = time.monotonic()
    trainer.train()
    wall = time.monotonic() - t0
    return wall, int(max(e.get("num_tokens", 0) for e in trainer.state.log_history))


def ours(student: Path, build: Path, out: Path, trl: dict) -> tuple[float, int, float]:
    from r1distill.train import sft

    t0 = time.monotonic()
    manifest = sft.run(sft.Config(model=str(student), trl={**trl, "save_strategy": "no"}), build, out)
    total = time.monotonic() - t0
    return manifest["wall_s"], manifest["train_tokens"], total


def main() -> None:
    a = knobs(__doc__, steps=40, hidden=256, layers=4, batch=8, rounds=2, packing=False)

    import sft_data

    trl = {"max_steps": a.steps, "per_device_train_batch_size": a.batch, "learning_rate": 1e-3, "max_length": 512,
           "packing": a.packing, "seed": 0}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        student = make_student(root / "student", a.hidden, a.layers)
        build = sft_data.make_build_dir(root / "build", train=256, validation=0)
        rows = []
        for r in range(a.rounds):
            order = ("plain", "ours") if r % 2 == 0 else ("ours", "plain")
            for side in order:
                out = root / f"{side}-{r}"
                if side == "plain":
                    wall, tokens = plain(student, build, out, trl)
                    rows.append((r, side, wall, tokens, wall))
                else:
                    wall, tokens, total = ours(student, build, out, trl)
                    rows.append((r, side, wall, tokens, total))
    print(f"\nstudent: Qwen2 hidden {a.hidden} x {a.layers} layers; {a.steps} steps x batch {a.batch}; "
          f"packing {a.packing}")  # fmt: skip
    print(f"{'round':>5} {'side':<6} {'train s':>8} {'tokens':>8} {'tok/s':>8} {'end-to-end s':>13}")
    for r, side, wall, tokens, total in rows:
        print(f"{r:>5} {side:<6} {wall:>8.2f} {tokens:>8} {tokens / wall:>8.1f} {total:>13.2f}")
    speed = {s: sum(t for _, side, _, t, _ in rows if side == s) / sum(w for _, side, w, _, _ in rows if side == s)
             for s in ("plain", "ours")}  # fmt: skip
    print(
        f"plain SFTTrainer {speed['plain']:.1f} tok/s, r1distill sft {speed['ours']:.1f} tok/s: "
        f"ratio {speed['ours'] / speed['plain']:.3f} (target >= 0.97)"
    )


if __name__ == "__main__":
    main()
