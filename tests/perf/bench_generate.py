"""Output tokens/s of `r1distill generate` vs plain `vllm.LLM.generate` on the same engine, prompts and sampling.

    .venv/bin/python tests/perf/bench_generate.py [--prompts 64] [--n 4] [--max-tokens 128] [--rounds 2]

Both sides share one `vllm.LLM` (same weights, same KV cache), use the same chat-templated prompts with the
`<think>` prefill and R1 sampling with `ignore_eos`, so every sample is exactly max-tokens long and the token
totals are equal. Plain vLLM gets all prompts at once with `n`; r1distill streams (prompt, k) requests through its
step loop and writes each sample to disk as it finishes. Rounds alternate the order to cancel drift.
Target (issue 2): ratio >= 0.95 on CPU with the bundled model.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from knobs import knobs  # noqa: E402  (tests/perf/knobs.py)

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    args = knobs(__doc__, prompts=64, n=4, max_tokens=128, rounds=2)

    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt

    from r1distill.core.models import default_teacher
    from r1distill.core.store import iter_records
    from r1distill.generate.engines import Request
    from r1distill.generate.engines.vllm_local import VLLMEngine
    from r1distill.generate.plan import messages_for
    from r1distill.generate.prompts import SourceConfig, load_prompts
    from r1distill.generate.stage import GenerateConfig, run

    sampling = {"temperature": 0.6, "top_p": 0.95, "max_tokens": args.max_tokens, "ignore_eos": True}
    source = SourceConfig(name="arith", builtin="arithmetic", count=args.prompts)
    cfg = GenerateConfig(sources=[source], n=args.n, sampling=sampling, seed=None)
    engine = VLLMEngine(str(default_teacher()), {"dtype": "bfloat16", "max_model_len": 2048, "enforce_eager": True})
    prompts = load_prompts([source])
    token_prompts = [
        TokensPrompt(prompt_token_ids=engine.render(Request("x", messages_for(cfg, q), prefill=cfg.prefill)))
        for q in prompts
    ]
    engine.llm.generate(token_prompts[:4], SamplingParams(max_tokens=8), use_tqdm=False)  # warm-up

    def plain() -> float:
        t0 = time.perf_counter()
        outs = engine.llm.generate(token_prompts, SamplingParams(n=args.n, **sampling), use_tqdm=False)
        wall = time.perf_counter() - t0
        return sum(len(c.token_ids) for o in outs for c in o.outputs) / wall

    def ours() -> float:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "gen"
            t0 = time.perf_counter()
            run(cfg, None, out, engine=engine)
            wall = time.perf_counter() - t0
            return sum(r["meta"]["completion_tokens"] for r in iter_records(out)) / wall

    plain_rates, our_rates = [], []
    for i in range(args.rounds):
        for name in ("plain", "ours") if i % 2 == 0 else ("ours", "plain"):
            rate = plain() if name == "plain" else ours()
            (plain_rates if name == "plain" else our_rates).append(rate)
            print(f"round {i + 1} {name:>5}: {rate:8.1f} output tok/s", flush=True)
    p_rate, o_rate = sum(plain_rates) / len(plain_rates), sum(our_rates) / len(our_rates)
    total = args.prompts * args.n * args.max_tokens
    print(f"\n{args.prompts} prompts x n={args.n} x {args.max_tokens} tokens = {total} output tokens per run")
    print(f"plain vllm.LLM.generate : {p_rate:8.1f} output tok/s")
    print(f"r1distill generate      : {o_rate:8.1f} output tok/s (includes writing every sample to disk)")
    print(f"ratio                   : {o_rate / p_rate:8.3f}  (target >= 0.95)")
    engine.close()


if __name__ == "__main__":
    main()
