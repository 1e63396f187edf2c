"""Judging one sample at a time, in worker processes: decontamination, the policy's checks, dedup keys.

The result that travels back to the stage is a `Judged` record: small (the output line, the dedup keys and
signatures, the length), so that the stage can hold one per survivor for the dedup pass.
"""

from __future__ import annotations

import json
import multiprocessing as mp
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1distill.core.records import Sample, prompt_key
from r1distill.core.store import StageError, batched, shard_paths
from r1distill.core.text import excerpt
from r1distill.filter.checks.policy import Policy, load_policy, policy_entry_names
from r1distill.filter.decontam import Benchmark, Decontaminator
from r1distill.filter.dedup import MinHasher, exact_key


@dataclass(slots=True)
class Judged:
    """One sample's verdict: `reason` None means it passed the policy (dedup comes later). `line` is the JSON to
    write (with `meta.filter` when dropped; dropped from memory once staged); `group` (its prompt), `pkey`/`psig`
    (problem exact key / MinHash) and `ckey`/`csig` (completion) are the dedup keys. `error`: the line was not a
    readable sample."""

    id: str
    domain: str
    chars: int
    tokens: int | None
    reason: str | None = None
    check: str | None = None
    evidence: dict[str, Any] | None = None
    line: str | None = None
    group: str | None = None
    pkey: str | None = None
    psig: bytes | None = None
    ckey: str | None = None
    csig: bytes | None = None
    error: str | None = None


class Judge:
    """Everything one process needs to judge a sample: the policy, the decontaminator and the hashers."""

    def __init__(self, cfg: Any):
        overrides = dict(cfg.overrides)
        if cfg.tokenizer and "length" in policy_entry_names(cfg.policy):
            overrides["length"] = {**(overrides.get("length") or {}), "tokenizer": cfg.tokenizer}
        self.policy: Policy = load_policy(cfg.policy, overrides)
        d = cfg.decontam
        benchmarks = [Benchmark.load(b.path, b.field, b.name) for b in d.benchmarks]
        self.decontam = (
            Decontaminator(benchmarks, d.ngram, d.min_overlap, d.numbers_masked, d.min_masked_tokens)
            if benchmarks
            else None
        )
        self.dedup = cfg.dedup
        if cfg.dedup.num_perm < 16 or cfg.dedup.num_perm & (cfg.dedup.num_perm - 1):
            raise StageError(f"filter.dedup.num_perm: must be a power of two >= 16, got {cfg.dedup.num_perm}")
        self.problem_hasher = MinHasher(cfg.dedup.num_perm, cfg.dedup.problem_ngram)
        # Completions are long: one-permutation hashing keeps their signatures O(length) (num_perm a power of two).
        self.completion_hasher = MinHasher(cfg.dedup.num_perm, cfg.dedup.completion_ngram, one_permutation=True)
        self._problem_cache: dict[str, tuple[dict[str, Any] | None, str | None, bytes | None]] = {}

    def _problem_info(self, problem: str) -> tuple[dict[str, Any] | None, str | None, bytes | None]:
        """(decontam hit, exact key, MinHash) of a problem, cached: the k samples of a prompt share it."""
        if not problem.strip():
            return None, None, None  # nothing to compare: never a duplicate problem
        info = self._problem_cache.get(problem)
        if info is None:
            hit = self.decontam.match(problem) if self.decontam else None
            sig = self.problem_hasher.signature(problem).tobytes() if self.dedup.near and self.dedup.problems else None
            info = (hit, exact_key(problem), sig)
            if len(self._problem_cache) > 100_000:
                self._problem_cache.clear()
            self._problem_cache[problem] = info
        return info

    def judge(self, line: str) -> Judged:
        """One input line -> its `Judged` result (a malformed record comes back with `error` set)."""
        try:
            sample = Sample.from_dict(json.loads(line))
            problem = problem_text(sample)
        except ValueError as e:
            return Judged("", "", 0, None, error=f"malformed JSON record ({e})")
        except (TypeError, AttributeError) as e:  # not an object, or a field missing
            return Judged("", "", 0, None, error=f"not a sample record ({str(e).replace('Sample.__init__() ', '')})")
        hit, pkey, psig = self._problem_info(problem)
        tokens = sample.meta.get("completion_tokens")  # the teacher's count, when generate recorded it
        out = Judged(sample.id, sample.domain, len(sample.completion), tokens if isinstance(tokens, int) else None)
        if hit is not None:
            check, verdict_reason, details = "decontam", "contaminated", hit
            ev = self.decontam_evidence(sample, hit)
        else:
            check, verdict = self.policy(sample)
            verdict_reason, details, ev = verdict.reason, verdict.details, verdict.evidence
        if check is not None:
            out.reason, out.check, out.evidence = verdict_reason, check, ev
            out.line = with_filter_meta(sample, check, verdict_reason, details, ev)
            return out
        out.line, out.group, out.pkey, out.psig = line, prompt_key(sample.source, sample.row), pkey, psig
        if self.dedup.completions:
            out.ckey = exact_key(sample.completion, words=False)
            if self.dedup.near:
                out.csig = self.completion_hasher.signature(sample.completion).tobytes()
        return out

    def decontam_evidence(self, sample: Sample, hit: dict[str, Any]) -> dict[str, Any]:
        """The training problem beside the benchmark problem it overlaps."""
        assert self.decontam is not None
        problem = problem_text(sample)
        shown, _ = excerpt(problem, 0)
        rule = {"ngram": self.decontam.ngram, "min_overlap": self.decontam.min_overlap}
        bench, _ = excerpt(self.decontam.text_of(hit), 0)
        return {"part": "problem", "offset": 0, "excerpt": shown, "threshold": rule, "benchmark_excerpt": bench}


def dedup_evidence(sample: Sample, step: str, details: dict[str, Any], threshold: float) -> dict[str, Any]:
    """A duplicate's evidence: the start of the duplicated problem or completion and the sample it repeats."""
    part = "problem" if step == "dedup_problem" else "completion"
    shown, _ = excerpt(problem_text(sample) if part == "problem" else sample.completion, 0)
    return {"part": part, "offset": 0, "excerpt": shown, "threshold": {"jaccard": threshold},
            "duplicate_of": details.get("duplicate_of")}  # fmt: skip


def problem_text(sample: Sample) -> str:
    """The problem as decontam and dedup see it: `problem`, else the last user message."""
    if sample.problem.strip():
        return sample.problem
    return next((m.get("content", "") for m in reversed(sample.messages) if m.get("role") == "user"), "")


def with_filter_meta(
    sample: Sample, check: str, reason: str, details: dict[str, Any], evidence: dict[str, Any] | None = None
) -> str:
    """The rejected sample's JSON line, with `meta["filter"]` saying which check dropped it, why, and the evidence."""
    sample.meta["filter"] = {"check": check, "reason": reason, "details": details, "evidence": evidence}
    return sample.to_json()


_WORKER: Judge | None = None  # set before forking: worker processes inherit the built policy and indexes


def _judge_batch(lines: list[str]) -> list[Judged]:
    assert _WORKER is not None
    return [_WORKER.judge(line) for line in lines]


def judge_all(worker: Judge, input_dir: Path, workers: int, batch_size: int):
    """Results for every input line, in input order, from `workers` forked processes (or this one)."""
    global _WORKER
    _WORKER = worker
    batches = batched(read_lines(input_dir), batch_size)
    if workers <= 1:
        for batch in batches:
            yield from _judge_batch(batch)
        return
    # apply_async with a bounded window, not imap: imap's feeder thread would read the whole input into memory.
    with mp.get_context("fork").Pool(workers) as pool:
        pending: deque = deque()
        for batch in batches:
            pending.append(pool.apply_async(_judge_batch, (batch,)))
            if len(pending) >= 4 * workers:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()


def read_lines(folder: Path) -> Iterator[str]:
    """The non-empty lines of a stage folder's shards, undecoded JSON; a line that is not UTF-8 names its place."""
    for path in shard_paths(folder):
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                if not raw.endswith(b"\n"):  # every writer of a shard ends a record with its newline
                    raise StageError(f"{path}:{lineno}: malformed JSON record, a torn last line (the writer was "
                                     "cut off); rerun the stage that wrote it")  # fmt: skip
                if raw.strip():
                    try:
                        yield raw.decode("utf-8").rstrip("\n")
                    except UnicodeDecodeError as e:
                        raise StageError(f"{path}:{lineno}: not UTF-8 text (at column {e.start + 1}); "
                                         "re-encode the file as UTF-8") from None  # fmt: skip


def locate(folder: Path, n: int) -> str:
    """`FILE:LINE` of the n-th (1-based) non-empty line of a stage folder, for an error message."""
    for path in shard_paths(folder):
        with open(path, "rb") as f:
            for lineno, raw in enumerate(f, 1):
                n -= bool(raw.strip())
                if n == 0:
                    return f"{path}:{lineno}"
    return f"{folder} (record #{n})"
