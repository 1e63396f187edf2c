"""Any OpenAI-compatible endpoint (vLLM/SGLang servers, hosted APIs) through the chat or completions API.

Requests run concurrently on an asyncio loop (at most `max_in_flight` at a time), spread over several base URLs
by least load; each finished one is yielded at once. Transient failures (429, 5xx, timeouts, connection resets,
unparseable bodies) are retried with exponential backoff and full jitter until the per-request deadline; what
still fails comes back as a `Completion` with `error` set, so the caller records it instead of writing a sample.

The API key is read from the environment variable the recipe names and only ever put in a request header.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from r1distill.generate.engines.base import Completion, Engine, Request, render_text

log = logging.getLogger(__name__)

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


@dataclass
class HTTPSettings:
    """The recipe's `generate.http:` section."""

    base_urls: list[str]
    api: str = "chat"  # chat | completions
    api_key_env: str | None = None
    max_in_flight: int = 64
    request_timeout_s: float = 600.0  # one attempt
    deadline_s: float = 3600.0  # all attempts of one request
    max_retries: int = 8
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    prefill_mode: str = "continue_final_message"  # how the prefill reaches a chat server: or "none"
    extra_body: dict[str, Any] | None = None  # passed into every request body untouched
    # Logprob capture needs token ids, not strings: vLLM returns them as "token_id:N" when asked.
    token_ids_in_logprobs: bool = True


class _Transient(Exception):
    """A failure worth retrying."""


class OpenAIEngine(Engine):
    name = "openai"
    supports_seed = True

    def __init__(self, model: str, settings: HTTPSettings, tokenizer: Any | None = None):
        if not settings.base_urls:
            raise ValueError("generate.http.base_urls: give at least one URL, e.g. http://127.0.0.1:8000/v1")
        if settings.api not in ("chat", "completions"):
            raise ValueError(f"generate.http.api must be 'chat' or 'completions', got {settings.api!r}")
        if settings.api == "completions" and tokenizer is None:
            raise ValueError("the completions API needs a tokenizer to apply the chat template locally")
        self.model = model
        self.s = settings
        self.tokenizer = tokenizer
        self._key = os.environ.get(settings.api_key_env, "") if settings.api_key_env else ""
        if settings.api_key_env and not self._key:
            raise ValueError(f"generate.http.api_key_env: environment variable {settings.api_key_env} is not set")
        self._load = {url.rstrip("/"): 0 for url in settings.base_urls}
        self._down_until = dict.fromkeys(self._load, 0.0)
        self.stats = {"retries": 0, "failed": 0}

    def describe(self) -> dict[str, Any]:
        # The key's variable name is recorded, never its value.
        return {
            "engine": self.name,
            "model": self.model,
            "base_urls": list(self._load),
            "api": self.s.api,
            "api_key_env": self.s.api_key_env,
        }

    def _pick_url(self) -> str:
        now = time.monotonic()
        up = [u for u in self._load if self._down_until[u] <= now] or list(self._load)
        return min(up, key=lambda u: (self._load[u], random.random()))

    def _body(self, req: Request) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = {"model": self.model, **req.sampling, **(self.s.extra_body or {})}
        if req.seed is not None:
            body["seed"] = req.seed
        if req.logprobs:
            if self.s.api == "completions":
                body["logprobs"] = req.logprobs
            else:
                body.update(logprobs=True, top_logprobs=req.logprobs)
            if self.s.token_ids_in_logprobs:
                body["return_tokens_as_token_ids"] = True
        if self.s.api == "completions":
            body["prompt"] = render_text(self.tokenizer, req)
            return "/completions", body
        messages = list(req.messages)
        if req.prefill and self.s.prefill_mode == "continue_final_message":
            messages.append({"role": "assistant", "content": req.prefill})
            body.update(continue_final_message=True, add_generation_prompt=False)
        body["messages"] = messages
        return "/chat/completions", body

    def _parse(self, req: Request, data: dict[str, Any]) -> Completion:
        choice = data["choices"][0]
        usage = data.get("usage") or {}
        full = False
        if self.s.api == "completions":
            text = choice["text"]
        else:
            msg = choice["message"]
            text = msg.get("content") or ""
            reasoning = msg.get("reasoning_content") or msg.get("reasoning")
            if reasoning:  # servers with a reasoning parser split the <think> block off: fold it back
                text = f"<think>\n{reasoning.strip()}\n</think>\n\n{text.lstrip()}"
                full = True
            elif req.prefill and self.s.prefill_mode != "continue_final_message":
                full = True  # the server did not see the prefill; the text is the whole answer
        done = Completion(
            req.id,
            text,
            choice.get("finish_reason"),
            int(usage.get("prompt_tokens", 0)),
            int(usage.get("completion_tokens", 0)),
            full=full,
        )
        if req.logprobs:
            done.logprobs = _parse_logprobs(choice.get("logprobs"), self.s.api)
        return done

    async def _attempt(self, session, req: Request, timeout: float) -> Completion:
        import aiohttp

        path, body = self._body(req)
        url = self._pick_url()
        headers = {"Authorization": f"Bearer {self._key}"} if self._key else {}
        self._load[url] += 1
        try:
            async with session.post(
                url + path, json=body, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                raw = await resp.text()
                if resp.status in RETRY_STATUS:
                    raise _Transient(f"HTTP {resp.status} from {url}: {raw[:200]}")
                if resp.status >= 400:
                    return Completion(req.id, "", None, 0, 0, error=f"HTTP {resp.status} from {url}: {raw[:500]}")
                try:
                    return self._parse(req, json.loads(raw))
                except (ValueError, KeyError, IndexError, TypeError) as e:
                    raise _Transient(f"unparseable response from {url}: {type(e).__name__}: {raw[:200]!r}") from e
        except (TimeoutError, aiohttp.ClientError, ConnectionError) as e:
            self._down_until[url] = time.monotonic() + self.s.backoff_base_s
            raise _Transient(f"{type(e).__name__} talking to {url}: {e}") from e
        finally:
            self._load[url] -= 1

    async def _one(self, session, req: Request) -> Completion:
        deadline = time.monotonic() + self.s.deadline_s
        error = "no attempt made"
        for attempt in range(self.s.max_retries + 1):
            left = deadline - time.monotonic()
            if left <= 0:
                error = f"deadline of {self.s.deadline_s:.0f} s passed; last error: {error}"
                break
            try:
                return await self._attempt(session, req, min(self.s.request_timeout_s, left))
            except _Transient as e:
                error = str(e)
            if attempt < self.s.max_retries:
                self.stats["retries"] += 1
                cap = min(self.s.backoff_max_s, self.s.backoff_base_s * 2**attempt)
                await asyncio.sleep(min(random.uniform(0, cap), max(0.0, deadline - time.monotonic())))
                log.debug("retrying %s after: %s", req.id, error)
        self.stats["failed"] += 1
        return Completion(req.id, "", None, 0, 0, error=error)

    def generate(self, requests: Iterable[Request]) -> Iterator[Completion]:
        loop = asyncio.new_event_loop()
        pending_reqs = iter(requests)
        tasks: set[asyncio.Task] = set()
        session = None
        try:
            session = loop.run_until_complete(_make_session(self.s.max_in_flight))
            exhausted = False
            while True:
                while not exhausted and len(tasks) < self.s.max_in_flight:
                    req = next(pending_reqs, None)
                    if req is None:
                        exhausted = True
                        break
                    tasks.add(loop.create_task(self._one(session, req)))
                if not tasks:
                    return
                done, tasks = loop.run_until_complete(asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED))
                for task in done:
                    yield task.result()
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            if session is not None:
                loop.run_until_complete(session.close())
            loop.close()


async def _make_session(limit: int):
    import aiohttp

    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit))


def _token_id(token: str) -> int:
    if not token.startswith("token_id:"):
        raise ValueError(f"logprob token {token!r} is not an id; the server must honour return_tokens_as_token_ids")
    return int(token[len("token_id:") :])


def _parse_logprobs(data: dict[str, Any] | None, api: str) -> tuple[list[int], list[float], list]:
    """OpenAI-style logprobs (chat `content` list or completions arrays) -> the Completion.logprobs triple."""
    if not data:
        raise ValueError("logprobs were requested but the response has none")
    ids, lps, top = [], [], []
    if api == "chat":
        for step in data["content"]:
            ids.append(_token_id(step["token"]))
            lps.append(float(step["logprob"]))
            top.append([(_token_id(t["token"]), float(t["logprob"])) for t in step.get("top_logprobs") or []])
    else:
        for tok, lp, alts in zip(data["tokens"], data["token_logprobs"], data["top_logprobs"], strict=True):
            ids.append(_token_id(tok))
            lps.append(float(lp))
            top.append(sorted(((_token_id(t), float(v)) for t, v in (alts or {}).items()), key=lambda x: -x[1]))
    return ids, lps, top
