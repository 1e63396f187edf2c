"""How much of the bundled teacher survives layer removal? Greedy answers on held-out arithmetic, per cut.

    .venv/bin/python tests/perf/prune_probe.py "[]" "[29]" "range(1, 30, 2)"     each argument: the layers to drop

Each cut is the teacher with those decoder layers removed (`core.models.keep_layers`, as `build_pruned_student`
cuts), asked the first 40 problems of `arith256` with the laptop experiment's system prompt and `<think>` prefill,
48 greedy tokens (HF generate, no vLLM). Prints the correct answers and how many produced a `\\boxed{}` at all.
Measured 2026-12-02: full teacher 11/40 correct (31 boxed); drop [29] 0/40 (0 boxed); [1, 2] 0; [26, 27, 28] 0;
every 3rd 0; every 5th 0; 20-27 0; every other 0 -- SmolLM2-135M does not survive any cut without training.
"""

import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from r1distill.core.models import keep_layers, resolve_model  # noqa: E402
from r1distill.evaluate import benchmarks  # noqa: E402
from r1distill.grading.answer import last_boxed  # noqa: E402
from r1distill.grading.math import math_equal  # noqa: E402

RECIPE = Path(__file__).resolve().parents[2] / "pipelines" / "laptop-distill.yaml"


def main(specs: list[str]) -> None:
    torch.set_num_threads(1)
    src = resolve_model("bundled:smollm2")
    tok = AutoTokenizer.from_pretrained(src)
    tok.padding_side = "left"
    system = yaml.safe_load(RECIPE.read_text())["generate"]["system_prompt"]
    bench = benchmarks.get("arith256")
    rows = [bench.convert(i, r) for i, r in enumerate(bench.builtin())][:40]
    prompts = [
        tok.apply_chat_template(
            [{"role": "system", "content": system},
             {"role": "user", "content": bench.prompt_template.replace("{problem}", r["problem"])}],
            tokenize=False, add_generation_prompt=True,
        ) + "<think>\n"
        for r in rows
    ]  # fmt: skip
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    for spec in specs:
        drop = set(eval(spec))  # a list or a range, from the command line
        model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
        keep_layers(model, [i for i in range(len(model.model.layers)) if i not in drop])
        t0 = time.monotonic()
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=48, do_sample=False, pad_token_id=tok.eos_token_id)
        correct = boxed = 0
        for r, o in zip(rows, out, strict=True):
            found = last_boxed(tok.decode(o[enc.input_ids.shape[1] :], skip_special_tokens=True))
            boxed += found is not None
            correct += found is not None and math_equal(found, str(r["answer"]))
        print(f"{model.config.num_hidden_layers} layers (dropped {sorted(drop)}): {correct}/{len(rows)} correct, "
              f"{boxed} boxed, {time.monotonic() - t0:.0f} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:] or ["[]", "range(1, 30, 2)"])
