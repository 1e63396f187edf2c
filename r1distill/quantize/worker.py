"""The compression itself, in a child process whose path puts llmcompressor's compressed-tensors first (stage.py
says why). `python -m r1distill.quantize.worker JOB.json` reads what stage.run wrote there (model folder, scheme or
recipe, calibration conversations) and saves the compressed model and its tokenizer beside the job file.

Exit 2 with one line starting `quantize` on a user error (no llmcompressor, a scheme it does not know); any other
failure is llmcompressor's traceback and exit 1.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

log = logging.getLogger("r1distill.quantize.worker")


def _fail(message: str) -> int:
    print(message, file=sys.stderr)
    return 2


def compress(job: dict, out: Path) -> None:
    """Calibrate and compress `job["model"]` into `out` (compressed-tensors format)."""
    import torch
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import QuantizationModifier
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(job["model"])
    texts = [tok.apply_chat_template(m, tokenize=False) for m in job["messages"]]
    enc = tok(texts, truncation=True, max_length=job["max_length"], add_special_tokens=False)
    data = Dataset.from_dict({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]})
    dtype = getattr(torch, job.get("dtype") or "bfloat16")
    model = AutoModelForCausalLM.from_pretrained(job["model"], dtype=dtype)
    recipe = job["recipe"]
    if recipe is None:
        recipe = [QuantizationModifier(targets=job["targets"], scheme=job["scheme"], ignore=job["ignore"])]
    elif isinstance(recipe, dict):
        import yaml

        recipe = yaml.safe_dump(recipe)
    oneshot(model=model, dataset=data, recipe=recipe, num_calibration_samples=len(texts),
            max_seq_length=job["max_length"], **job["oneshot"])  # fmt: skip
    model.save_pretrained(out, save_compressed=True)
    tok.save_pretrained(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    job_file = Path(argv[0])
    job = json.loads(job_file.read_text(encoding="utf-8"))
    try:
        import llmcompressor  # noqa: F401
    except ImportError as e:
        return _fail(
            f"quantize: llmcompressor cannot be imported ({e}); run `make install`, which puts llmcompressor==0.14.0.1 "
            "and compressed-tensors==0.19.0 in .venv/llmcompressor (or set R1DISTILL_LLMCOMPRESSOR to such a folder)"
        )
    if job["recipe"] is None:
        from compressed_tensors.quantization.quant_scheme import PRESET_SCHEMES

        if job["scheme"] not in PRESET_SCHEMES:
            return _fail(f"quantize.scheme: {job['scheme']!r} is not a preset; one of {', '.join(PRESET_SCHEMES)}")
    compress(job, job_file.parent)
    return 0


if __name__ == "__main__":
    sys.exit(main())
