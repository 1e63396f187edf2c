"""The HTTP engine against a small misbehaving OpenAI-style server on 127.0.0.1 (429, 500, garbage JSON, a hang,
a 400), run in a thread by the test: retries, the deadline, load balancing, failure records, the API key's
secrecy and the folding of `reasoning_content` into the `<think>` form."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter

import pytest
from aiohttp import web

from r1distill.core.store import StageError, iter_records, read_manifest
from r1distill.generate.engines import Request
from r1distill.generate.engines.openai_http import HTTPSettings, OpenAIEngine
from r1distill.generate.prompts import SourceConfig
from r1distill.generate.stage import GenerateConfig, run

SECRET = "sk-test-0123456789-do-not-leak"


class FlakyServer:
    """Behaviour is chosen by the user message: 'flaky-N' fails N times with 429/500/garbage before answering."""

    def __init__(self):
        self.hits: Counter[str] = Counter()
        self.auth: set[str] = set()
        self.bodies: list[dict] = []

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        self.auth.add(request.headers.get("Authorization", ""))
        user = body["messages"][0]["content"]
        self.hits[user] += 1
        n = self.hits[user]
        kind, _, count = user.partition("-")
        if kind == "flaky" and n <= int(count):
            return [
                web.Response(status=429, text="slow down"),
                web.Response(status=500, text="boom"),
                web.Response(status=200, text="{not json"),
            ][(n - 1) % 3]
        if kind == "hang":
            await asyncio.sleep(3)
        if kind == "bad":
            return web.Response(status=400, text='{"error": "max_tokens too large"}')
        message = {"role": "assistant", "content": f"answer to {user}"}
        if kind == "reasoner":
            message["reasoning_content"] = "I think hard."
        return web.json_response(
            {
                "choices": [{"message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 7, "completion_tokens": 5},
            }
        )


@pytest.fixture
def servers():
    """Two servers on free loopback ports, each in its own thread and event loop."""
    handlers, urls, stops = [], [], []
    for _ in range(2):
        handler = FlakyServer()
        loop = asyncio.new_event_loop()
        app = web.Application()
        app.router.add_post("/v1/chat/completions", handler.chat)
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        loop.run_until_complete(site.start())
        port = site._server.sockets[0].getsockname()[1]
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        handlers.append(handler)
        urls.append(f"http://127.0.0.1:{port}/v1")
        stops.append((loop, runner, thread))
    yield handlers, urls
    for loop, runner, thread in stops:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def engine(urls, **kw):
    settings = dict(
        base_urls=urls,
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        request_timeout_s=1.0,
        deadline_s=5.0,
        max_retries=6,
        max_in_flight=8,
    )
    return OpenAIEngine("teacher", HTTPSettings(**{**settings, **kw}))


def req(text, **kw):
    return Request(text, [{"role": "user", "content": text}], {"max_tokens": 16}, **kw)


def test_transient_errors_are_retried_until_success(servers):
    handlers, urls = servers
    eng = engine(urls[:1])
    out = {c.id: c for c in eng.generate([req("flaky-3"), req("flaky-5"), req("ok")])}
    assert all(c.error is None for c in out.values())
    assert out["flaky-5"].text == "answer to flaky-5" and out["flaky-5"].completion_tokens == 5
    assert handlers[0].hits["flaky-3"] == 4 and handlers[0].hits["flaky-5"] == 6 and handlers[0].hits["ok"] == 1
    assert eng.stats["retries"] == 8


def test_a_hang_hits_the_deadline_and_is_reported_not_dropped(servers):
    _, urls = servers
    eng = engine(urls[:1], request_timeout_s=0.3, deadline_s=1.0)
    out = {c.id: c for c in eng.generate([req("hang"), req("ok")])}
    assert out["ok"].error is None
    assert out["hang"].error and ("deadline" in out["hang"].error or "Timeout" in out["hang"].error)


def test_client_errors_are_not_retried(servers):
    handlers, urls = servers
    (c,) = engine(urls[:1]).generate([req("bad")])
    assert c.error.startswith("HTTP 400") and "max_tokens too large" in c.error and handlers[0].hits["bad"] == 1


def test_retries_give_up_after_max_retries(servers):
    handlers, urls = servers
    (c,) = engine(urls[:1], max_retries=2).generate([req("flaky-99")])
    assert c.error and handlers[0].hits["flaky-99"] == 3


def test_load_is_spread_over_base_urls_and_key_is_sent(servers, monkeypatch):
    handlers, urls = servers
    monkeypatch.setenv("TEACHER_KEY", SECRET)
    eng = engine(urls, api_key_env="TEACHER_KEY")
    out = list(eng.generate([req(f"ok {i}") for i in range(40)]))
    assert len(out) == 40 and all(c.error is None for c in out)
    per_server = [sum(h.hits.values()) for h in handlers]
    assert min(per_server) >= 10, per_server
    assert handlers[0].auth == {f"Bearer {SECRET}"}
    assert SECRET not in json.dumps(eng.describe())


def test_prefill_reaches_the_server_and_reasoning_is_folded(servers):
    handlers, urls = servers
    (c,) = engine(urls[:1]).generate([req("reasoner", prefill="<think>\n", seed=5)])
    body = handlers[0].bodies[-1]
    assert body["messages"][-1] == {"role": "assistant", "content": "<think>\n"}
    assert body["continue_final_message"] is True and body["seed"] == 5 and body["max_tokens"] == 16
    assert c.full and c.text == "<think>\nI think hard.\n</think>\n\nanswer to reasoner"


def test_generate_records_failures_and_a_rerun_retries_exactly_those(servers, tmp_path, monkeypatch):
    handlers, urls = servers
    monkeypatch.setenv("TEACHER_KEY", SECRET)
    prompts = tmp_path / "p.jsonl"
    prompts.write_text("".join(json.dumps({"problem": p, "answer": "1"}) + "\n" for p in ["ok a", "flaky-99", "ok b"]))
    http = HTTPSettings(
        base_urls=urls[:1], api_key_env="TEACHER_KEY", backoff_base_s=0.01, backoff_max_s=0.02, max_retries=2
    )
    cfg = GenerateConfig(
        sources=[SourceConfig(name="s", path=str(prompts))],
        engine="openai",
        model="teacher",
        http=http,
        n=1,
        prefill="",
    )
    out = tmp_path / "out"
    with pytest.raises(StageError, match="1 requests failed"):
        run(cfg, None, out)
    assert sorted(r["id"] for r in iter_records(out)) == ["s/0/0", "s/2/0"]  # the failed one is not a sample
    errors = [json.loads(x) for x in (out / "errors.jsonl").read_text().splitlines()]
    assert [e["id"] for e in errors] == ["s/1/0"] and urls[0] in errors[0]["error"]
    assert read_manifest(out) is None
    handlers[0].hits.clear()
    handlers[0].hits["flaky-99"] = 99  # the server recovers: the next try is its 100th and succeeds
    manifest = run(cfg, None, out)
    assert dict(handlers[0].hits) == {"flaky-99": 100}  # only the failed request was sent again
    assert manifest["counts"]["samples"] == 3
    blob = "".join(p.read_text() for p in out.rglob("*") if p.is_file())
    assert SECRET not in blob
