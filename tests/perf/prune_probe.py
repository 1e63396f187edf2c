"""How much of the bundled teacher survives layer removal? Greedy answers on held-out arithmetic, per cut.

    .venv/bin/python tests/perf/prune_probe.py "[]" "[29]" "range(1, 30, 2)"     each argument: the layers to drop

Each cut is the teacher with those decoder layers removed (as `build_pruned_student` does, KV-cache indices
renumbered), asked the first 40 problems of `arith256` with the laptop experiment's system prompt and `<think>` prefill,
48 greedy tokens (HF generate, no vLLM). Prints the correct answers and how many produced a `\\boxed{}` at all.
Measured 2026-12-02: full teacher 11/40 correct (31 boxed); drop [29] 0/40 (0 boxed); [1, 2] 0; [26, 27, 28] 0;
every 3rd 0; every 5th 0; 20-27 0; every other 0 -- SmolLM2-135M does not survive any cut without training.
"""

import re
import sys
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from r1distill.core.models import resolve_model  # noqa: E402
from r1distill.evaluate import benchmarks  # noqa: E402

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
        layers = model.model.layers
        keep = [i for i in range(len(layers)) if i not in drop]
        model.model.layers = torch.nn.ModuleList(layers[i] for i in keep)
        for j, layer in enumerate(model.model.layers):
            layer.self_attn.layer_idx = j
        model.config.num_hidden_layers = len(keep)
        if getattr(model.config, "layer_types", None):
            model.config.layer_types = [model.config.layer_types[i] for i in keep]
        t0 = time.monotonic()
        with torch.no_grad():
            out = model.generate(**enc, max_new_tokens=48, do_sample=False, pad_token_id=tok.eos_token_id)
        correct = boxed = 0
        for r, o in zip(rows, out, strict=True):
            found = re.findall(r"\\boxed\{([^}]*)\}", tok.decode(o[enc.input_ids.shape[1] :], skip_special_tokens=True))
            boxed += bool(found)
            correct += bool(found) and found[-1].strip() == str(r["answer"]).strip()
        print(f"{len(keep)} layers (dropped {sorted(drop)}): {correct}/{len(rows)} correct, {boxed} boxed, "
              f"{time.monotonic() - t0:.0f} s", flush=True)  # fmt: skip


if __name__ == "__main__":
    main(sys.argv[1:] or ["[]", "range(1, 30, 2)"])
