"""LLM judge fallback: ask a judge model about the answers the rules cannot decide, as OpenR1-Math did with a 70B one.

Off by default (`verify.judge.enabled`). The rules stay first: only a math/science sample whose rule verdict is
undecidable goes to the judge, that is

- `no_answer` with a final-answer text present (nothing the parser could extract: "the answer is the empty set"),
- `wrong_answer` against a free-text reference (words, not a value: math-verify compares expressions, not prose).

The judge is any OpenAI-compatible server, reached through the project's HTTP engine (`generate.engines.openai_http`:
retries with backoff, a per-request deadline, failures returned as records), with the fixed, versioned prompt
below at temperature 0. Its verdict becomes the sample's grade with its own reasons (`judge_correct`,
`judge_wrong`, `judge_unparsed`) and `verdict_by: judge`, so manifests and reports count judged verdicts apart from
rule verdicts; the rule's reason is kept as `rule_reason`.

Verdicts are cached by (prompt version, judge model, problem, reference, answer) in an append-only JSONL file: a
killed or failed run resumes asking only what is missing, and the same answer to the same problem is asked once.
A request that still fails after the engine's retries is not cached: `judge_undecided` raises a StageError naming
it (the batch is left ungraded, so a rerun grades it again and asks the judge only for what the cache lacks).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1distill.core.records import Sample, parse_completion
from r1distill.core.store import StageError
from r1distill.generate.engines.base import Request
from r1distill.generate.engines.openai_http import HTTPSettings, OpenAIEngine
from r1distill.grading.answer import reference_answer
from r1distill.grading.base import Grade

log = logging.getLogger(__name__)

PROMPT_VERSION = "r1distill-judge-v1"
# Fixed: changing a word changes verdicts, so any change is a new PROMPT_VERSION (and a fresh cache key).
PROMPT = """You are grading a student's final answer to a problem against the reference answer.
Decide whether the student's final answer is mathematically equivalent to the reference answer. Ignore formatting,
units written out in words, and how the answer was reached; judge only the final answer.

Problem:
{problem}

Reference answer:
{reference}

Student's final answer:
{answer}

Reply with exactly one word: CORRECT if the student's final answer is equivalent to the reference answer, INCORRECT
otherwise."""
CACHE = "judge-cache.jsonl"
JUDGE_DOMAINS = ("math", "science")
_VERDICT = re.compile(r"\b(INCORRECT|CORRECT)\b")
_LATEX = re.compile(r"\\[A-Za-z]+")
_WORD = re.compile(r"[A-Za-z]{3,}")
_MATH_WORDS = {"sqrt", "frac", "sin", "cos", "tan", "log", "exp", "inf", "infty", "and", "pi", "mod", "cup", "cap"}


@dataclass
class JudgeConfig:
    """The recipe's `verify.judge:` section. `model`: the judge's served model name; `http`: its server(s), with
    the engine's retry and deadline settings (`generate.http`'s fields); `max_tokens`: room for the reply (a
    reasoning judge needs more)."""

    enabled: bool = False
    model: str = "judge"
    http: HTTPSettings | None = None
    max_tokens: int = 512


def free_text(reference: Any) -> bool:
    """Whether a gold answer is prose rather than a value: two or more words once LaTeX commands are dropped."""
    gold = _LATEX.sub(" ", reference_answer(reference))
    return len([w for w in _WORD.findall(gold) if w.lower() not in _MATH_WORDS]) >= 2


def undecided(sample: Sample, grade: Grade) -> str | None:
    """The final-answer text to judge when the rules could not decide `sample`, else None."""
    if sample.domain not in JUDGE_DOMAINS or sample.reference is None or not str(sample.reference).strip():
        return None
    parsed = parse_completion(sample.completion)
    answer = parsed.answer.strip()
    if not answer or (parsed.has_think and not parsed.closed):
        return None
    if grade.reason == "no_answer" or (grade.reason == "wrong_answer" and free_text(sample.reference)):
        return answer[-2000:]  # the end holds the final answer; a whole essay would only cost tokens
    return None


def cache_key(model: str, problem: str, reference: Any, answer: str) -> str:
    blob = json.dumps([PROMPT_VERSION, model, problem, reference_answer(reference), answer], ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def parse_verdict(reply: str) -> str:
    """`correct`, `wrong` or `unparsed` from the judge's reply (its last CORRECT/INCORRECT after any think block)."""
    hits = _VERDICT.findall(parse_completion(reply).answer or reply)
    if not hits:
        return "unparsed"
    return "correct" if hits[-1] == "CORRECT" else "wrong"


class Judge:
    """Asks the judge through the HTTP engine, remembering every verdict in `cache_path` (JSONL, appended).

    `stats`: `asked` (requests sent this session), `cached` (answered from the cache), `failed`."""

    def __init__(self, cfg: JudgeConfig, cache_path: str | Path):
        if cfg.http is None or not cfg.http.base_urls:
            raise StageError("verify.judge.http.base_urls: the judge needs a server, e.g. [http://127.0.0.1:8000/v1]")
        self.cfg = cfg
        self.engine = OpenAIEngine(cfg.model, cfg.http)
        self.path = Path(cache_path)
        self.known = self._load()
        self.stats = {"asked": 0, "cached": 0, "failed": 0}

    def _load(self) -> dict[str, dict[str, Any]]:
        known: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except ValueError:  # the torn last line of a killed run: that verdict is asked again
                    continue
                known[entry["key"]] = entry
        return known

    def _remember(self, entry: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.known[entry["key"]] = entry

    def verdicts(self, items: Sequence[tuple[str, Any, str]]) -> list[dict[str, Any]]:
        """One entry per (problem, reference, answer): {"verdict", "reply", ...} or {"error"} for a failed request."""
        keys = [cache_key(self.cfg.model, p, r, a) for p, r, a in items]
        todo: dict[str, Request] = {}
        for key, (problem, reference, answer) in zip(keys, items, strict=True):
            if key in self.known:
                self.stats["cached"] += 1
            elif key not in todo:
                prompt = PROMPT.format(problem=problem, reference=reference_answer(reference), answer=answer)
                sampling = {"max_tokens": self.cfg.max_tokens, "temperature": 0.0}
                todo[key] = Request(key, [{"role": "user", "content": prompt}], sampling, "", 0)
        errors: dict[str, str] = {}
        if todo:
            log.info("judge: asking %s about %d answers (%d cached)", self.cfg.model, len(todo), len(items) - len(todo))
        for done in self.engine.generate(todo.values()):
            self.stats["asked"] += 1
            if done.error:
                self.stats["failed"] += 1
                errors[done.id] = done.error
                continue
            entry = {"key": done.id, "verdict": parse_verdict(done.text), "reply": done.text[-500:],
                     "model": self.cfg.model, "prompt_version": PROMPT_VERSION}  # fmt: skip
            self._remember(entry)
        return [self.known.get(k) or {"key": k, "error": errors.get(k, "not answered")} for k in keys]


_REASONS = {"correct": "judge_correct", "wrong": "judge_wrong", "unparsed": "judge_unparsed"}


def judge_undecided(
    cfg: JudgeConfig | None, samples: Sequence[Sample | dict[str, Any]], grades: list[Grade], cache_dir: Path
) -> list[Grade]:
    """`grades` with the undecided ones replaced by the judge's verdicts (nothing changes when the judge is off).

    Raises StageError when a request failed after its retries: the verdicts already given are cached in
    `cache_dir`, so a rerun asks only for the rest."""
    if cfg is None or not cfg.enabled:
        return grades
    items = [s if isinstance(s, Sample) else Sample.from_dict(s) for s in samples]
    asks = [(i, undecided(s, g)) for i, (s, g) in enumerate(zip(items, grades, strict=True))]
    asks = [(i, a) for i, a in asks if a is not None]
    if not asks:
        return grades
    judge = Judge(cfg, Path(cache_dir) / CACHE)
    answers = judge.verdicts([(items[i].problem, items[i].reference, a) for i, a in asks])
    failed = [(i, v["error"]) for (i, _), v in zip(asks, answers, strict=True) if "error" in v]
    if failed:
        raise StageError(
            f"judge: {len(failed)} of {len(asks)} requests to {cfg.model} failed (first, {items[failed[0][0]].id}: "
            f"{failed[0][1][:200]}); verdicts given so far are cached in {Path(cache_dir) / CACHE}: rerun to resume"
        )
    out = list(grades)
    for (i, _), v in zip(asks, answers, strict=True):
        rule = grades[i]
        said = {"model": v["model"], "prompt_version": v["prompt_version"], "reply": v["reply"][-200:]}
        details = {**rule.details, "verdict_by": "judge", "rule_reason": rule.reason, "judge": said}
        out[i] = Grade(v["verdict"] == "correct", _REASONS[v["verdict"]], rule.extracted, details)
    return out
