"""Soft labels vs hard labels, end to end on CPU (issue 8): does a student distilled on the teacher's top-k get closer
to the teacher than one trained on the sampled text alone, for the same steps?

    .venv/bin/python tests/perf/kd_experiment.py [--train 96] [--heldout 24] [--steps 120] [--k 20] [--online]

Teacher: the bundled SmolLM2-135M-Instruct, sampling its own reasoning at temperature 1 for arithmetic prompts
(so the text follows its distribution), with top-k logprobs written to real generate-format sidecars (kd_data.py).
Students: one random-init tiny Qwen2 (the teacher's tokenizer), copied for each arm, trained with the same data
order, steps and learning rate: plain TRL SFTTrainer (hard labels) vs KDTrainer offline k (alpha, T), and with
`--online` also KDTrainer with the teacher model beside it (full vocabulary). Measured on held-out teacher samples:
KL(teacher || student) per assistant token over the full vocabulary (the teacher's exact distribution, recomputed),
and token accuracy (student argmax = the teacher's token).
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from kd_data import teacher_run, tiny_student  # noqa: E402
from knobs import knobs  # noqa: E402  (tests/perf/knobs.py)
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import SFTConfig, SFTTrainer  # noqa: E402

import r1distill.train.kd.teacher  # noqa: E402, F401  (imported now: an edit mid-run cannot mix versions)
import r1distill.train.kd.trainer  # noqa: E402, F401
from r1distill.core.models import default_teacher  # noqa: E402
from r1distill.train import kd  # noqa: E402
from r1distill.train.kd.loss import full_kl  # noqa: E402


@torch.no_grad()
def evaluate(student, teacher, tok, rows) -> dict[str, float]:
    """Mean full-vocabulary KL(teacher || student) and token accuracy over the held-out assistant tokens."""
    kl_sum = correct = n = 0
    for row in rows:
        enc = tok.apply_chat_template(
            row["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        ids = torch.tensor([enc["input_ids"]])
        m = torch.tensor(enc["assistant_masks"][1:], dtype=torch.bool)
        z_s = student(ids).logits[0, :-1][m]
        z_t = teacher(ids).logits[0, :-1][m]
        y = ids[0, 1:][m]
        kl_sum += full_kl(z_s, z_t).sum().item()
        correct += (z_s.argmax(-1) == y).sum().item()
        n += int(m.sum())
    return {"kl_to_teacher": kl_sum / n, "token_accuracy": correct / n, "tokens": n}


def main() -> None:
    # --online: also train with the teacher model online (full vocab); --out: the figures as JSON; --cache: keep the
    # teacher samples in this folder and reuse them
    a = knobs(__doc__, train=96, heldout=24, steps=120, k=20, alpha=0.5, temperature=1.0, lr=3e-3, max_new_tokens=32,
              online=False, out=None, cache=None)  # fmt: skip
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    work = Path(a.cache) if a.cache else Path(tempfile.mkdtemp(prefix="kd-exp-"))
    try:
        t0 = time.monotonic()
        td = default_teacher()
        cached = work / "rows.json"
        if cached.exists():
            rows = json.loads(cached.read_text())
        else:
            shutil.rmtree(work / "generate", ignore_errors=True)
            rows = teacher_run(td, work / "generate", n=a.train + a.heldout, k=a.k, sample=True,
                               max_new_tokens=a.max_new_tokens, seed=1)  # fmt: skip
            cached.write_text(json.dumps(rows))
        train, heldout = rows[: a.train], rows[a.train :]
        print(f"teacher samples: {len(rows)} in {time.monotonic() - t0:.0f} s", flush=True)
        student = tiny_student(td, work / "student")
        tok = AutoTokenizer.from_pretrained(student)
        teacher = AutoModelForCausalLM.from_pretrained(td, dtype=torch.float32).eval()
        init = AutoModelForCausalLM.from_pretrained(student)
        results = {"init": evaluate(init, teacher, tok, heldout)}
        arms = {"sft": None, f"kd_offline_k{a.k}": {"alpha": a.alpha, "temperature": a.temperature}}
        if a.online:
            arms["kd_online_full"] = {"source": "online", "alpha": a.alpha, "temperature": a.temperature}
        for name, raw in arms.items():
            t1 = time.monotonic()
            args = SFTConfig(output_dir=str(work / name), use_cpu=True, bf16=False, report_to="none",
                             assistant_only_loss=True, per_device_train_batch_size=8, max_steps=a.steps,
                             learning_rate=a.lr, lr_scheduler_type="constant", logging_steps=10,
                             save_strategy="no", seed=0, packing=False)  # fmt: skip
            cls, ds, extra = SFTTrainer, Dataset.from_list(train), {}
            if raw is not None:
                cls, ds, _, extra = kd.setup({**raw, "teacher": str(td)}, "sft.kd", tokenizer=tok, student=str(student),
                                             input_dir=work / "build", train=ds, eval=None, args=args)  # fmt: skip
            trainer = cls(model=AutoModelForCausalLM.from_pretrained(student), args=args, train_dataset=ds,
                          processing_class=tok, **extra)  # fmt: skip
            trainer.train()
            results[name] = {**evaluate(trainer.model.eval(), teacher, tok, heldout),
                             "train_s": round(time.monotonic() - t1, 1)}  # fmt: skip
            if raw is not None and extra["kd"].offline is not None:
                results[name]["aligned"] = round(extra["kd"].offline.aligned_fraction, 4)
            print(name, json.dumps(results[name]), flush=True)
        settings = {k: v for k, v in vars(a).items() if k != "out"}
        print(json.dumps({"settings": settings, "results": results}, indent=1))
        if a.out:
            Path(a.out).write_text(json.dumps({"settings": settings, "results": results}, indent=1))
    finally:
        if not a.cache:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
