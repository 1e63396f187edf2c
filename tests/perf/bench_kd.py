"""Cost of soft-label distillation: step time and peak memory of KD (offline sidecars, k=20) vs plain sft, and
sidecar bytes per token.

    .venv/bin/python tests/perf/bench_kd.py [--rows 64] [--k 20] [--max-length 1024] [--steps 12]

Same student (tiny Qwen2 with the SmolLM2 tokenizer: 49k vocabulary, so the logits dominate as they do for real
students), same rows (teacher logprobs from the bundled SmolLM2 via kd_data.py), packed (bfd) to `--max-length`,
batch 1. Each arm runs in its own process: step time is the median after two warm-up steps; peak memory is the
process's peak RSS during training above its RSS before the first step (on a GPU: torch's peak allocation).
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from knobs import knobs  # noqa: E402  (tests/perf/knobs.py)

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def arm(name: str, work: Path, a) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from r1distill.train import kd

    rows = json.loads((work / "rows.json").read_text())
    tok = AutoTokenizer.from_pretrained(work / "student")
    args = SFTConfig(output_dir=str(work / name), use_cpu=not torch.cuda.is_available(), bf16=False,
                     report_to="none", assistant_only_loss=True, packing=True, max_length=a.max_length,
                     per_device_train_batch_size=1, max_steps=a.steps, save_strategy="no", logging_steps=1,
                     seed=0)  # fmt: skip
    cls, ds, extra = SFTTrainer, Dataset.from_list(rows), {}
    if name == "kd":
        cls, ds, _, extra = kd.setup({"alpha": 0.5, "temperature": 1.0, "logprobs_dir": str(work / "generate")},
                                     "sft.kd", tokenizer=tok, student=str(work / "student"), input_dir=None,
                                     train=ds, eval=None, args=args)  # fmt: skip
    times: list[float] = []

    class Clock(TrainerCallback):
        def on_step_begin(self, *_, **__):
            self.t = time.perf_counter()

        def on_step_end(self, *_, **__):
            times.append(time.perf_counter() - self.t)

    trainer = cls(model=AutoModelForCausalLM.from_pretrained(work / "student"), args=args, train_dataset=ds,
                  processing_class=tok, callbacks=[Clock()], **extra)  # fmt: skip
    tokens = sum(len(r["input_ids"]) for r in trainer.train_dataset)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # resets the peak RSS (VmHWM) to the current RSS
    base = rss_kb("VmRSS")
    trainer.train()
    peak_mb = (
        torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else (rss_kb("VmHWM") - base) / 1024
    )
    return {"arm": name, "step_s": statistics.median(times[2:]), "peak_mb": round(peak_mb, 1),
            "tokens_per_step": tokens // max(1, len(trainer.train_dataset)), "steps": len(times)}  # fmt: skip


def main() -> None:
    a = knobs(__doc__, ("arm", "work"), rows=64, k=20, max_length=1024, steps=12)
    if a.arm:
        print(json.dumps(arm(a.arm, Path(a.work), a)))
        return
    from kd_data import teacher_run, tiny_student

    from r1distill.core.models import default_teacher
    from r1distill.generate.logprobs import bytes_per_token

    with tempfile.TemporaryDirectory(prefix="bench-kd-") as tmp:
        work = Path(tmp)
        rows = teacher_run(default_teacher(), work / "generate", n=a.rows, k=a.k)
        tiny_student(default_teacher(), work / "student")
        (work / "rows.json").write_text(json.dumps(rows))
        side = sum(f.stat().st_size for f in (work / "generate").glob("*.bin"))
        tokens = sum(json.loads(r["meta"])["logprobs"]["tokens"] for r in rows)
        results = []
        for name in ("sft", "kd"):
            cmd = [sys.executable, __file__, "--arm", name, "--work", str(work), "--max-length", str(a.max_length),
                   "--steps", str(a.steps)]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
    sft, kd = results
    print(f"{'arm':<6}{'step s':>9}{'peak MB':>10}{'tokens/step':>13}")
    for r in results:
        print(f"{r['arm']:<6}{r['step_s']:>9.3f}{r['peak_mb']:>10.1f}{r['tokens_per_step']:>13}")
    print(f"kd/sft step time x{kd['step_s'] / sft['step_s']:.2f}, peak memory +{kd['peak_mb'] - sft['peak_mb']:.0f} MB")
    print(f"sidecar: {side / tokens:.1f} bytes/token at k={a.k} (format: {bytes_per_token(a.k)}), {tokens} tokens")


if __name__ == "__main__":
    main()
