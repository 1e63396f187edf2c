"""Filter: R1's rules, decontamination and dedup over verified samples; every drop kept on disk with its reason.

    r1distill filter -c pipelines/quickstart.yaml          (the recipe's `filter:` section)

Funnel order: decontamination, then the policy's checks in order (the first failing check names the reason), then
problem dedup and completion dedup. Kept samples go to `OUTPUT/part-*.jsonl`, dropped ones to
`OUTPUT/rejected/<reason>/part-*.jsonl` with `meta["filter"] = {"check", "reason", "details"}`. The report is in
the manifest (funnel, counts per reason and domain, example ids, lengths) and in `report.md` (+ SVG charts).
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import shutil
import sys
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from r1distill.core.records import Sample
from r1distill.core.stage import Stage
from r1distill.core.store import ShardWriter, StageError, iter_records, sha256_file, shard_paths, write_manifest
from r1distill.filter.checks.policy import Policy, load_policy, policy_entry_names
from r1distill.filter.decontam import Benchmark, Decontaminator
from r1distill.filter.dedup import Deduplicator, MinHasher, exact_key
from r1distill.filter.report import length_summary, write_report

log = logging.getLogger(__name__)


@dataclass
class BenchmarkFile:
    """A local benchmark file; `field` names the problem text (`problem,question`: first present)."""

    path: str
    field: str = "problem"
    name: str | None = None


@dataclass
class DedupConfig:
    """Exact and (with `near`) MinHash-LSH duplicates at Jaccard >= `threshold` over word n-grams. Problems are
    compared per prompt row (its k samples stay together), completions per sample; the first occurrence wins."""

    problems: bool = True
    completions: bool = True
    near: bool = True
    threshold: float = 0.8
    num_perm: int = 128
    problem_ngram: int = 3
    completion_ngram: int = 5


@dataclass
class DecontamConfig:
    """A training problem holding `min_overlap` of a benchmark problem's word `ngram`s is dropped (`contaminated`);
    `numbers_masked` repeats the test with every number masked (benchmark problems of `min_masked_tokens`+)."""

    benchmarks: list[BenchmarkFile] = field(default_factory=list)
    ngram: int = 8
    min_overlap: float = 0.5
    numbers_masked: bool = True
    min_masked_tokens: int = 12


@dataclass
class FilterConfig:
    """The recipe's `filter:` section. `policy` is a path (relative to the current directory); `overrides` update
    a check's parameters by name (`{long_paragraph: {max_chars: 2000}}`) or disable it (`{code_block: false}`);
    `tokenizer` (the student's) is handed to the policy's `length` check."""

    policy: str = "filters/r1.yaml"
    overrides: dict[str, Any] = field(default_factory=dict)
    tokenizer: str | None = None
    dedup: DedupConfig = field(default_factory=DedupConfig)
    decontam: DecontamConfig = field(default_factory=DecontamConfig)
    workers: int = 1
    batch_size: int = 64
    rows_per_shard: int = 10_000
    examples_per_reason: int = 5

    HASH_EXCLUDE = ("workers", "batch_size", "rows_per_shard")

    def hash_extra(self) -> dict[str, str]:
        """The policy file's content is part of the config: an edited policy reruns the stage."""
        return {"policy_sha256": _policy_sha(self)}


Config = FilterConfig
STAGING = ".staging"


class _Worker:
    """Everything one process needs to judge a sample: the policy, the decontaminator and the hashers."""

    def __init__(self, cfg: FilterConfig):
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

    def judge(self, line: str) -> dict[str, Any]:
        """One input line -> a small result: reason (None = kept so far), output line, dedup keys, length."""
        sample = Sample.from_dict(json.loads(line))
        hit, pkey, psig = self._problem_info(problem_text(sample))
        tokens = sample.meta.get("completion_tokens")  # the teacher's count, when generate recorded it
        out: dict[str, Any] = {"id": sample.id, "domain": sample.domain, "chars": len(sample.completion),
                               "tokens": tokens if isinstance(tokens, int) else None}  # fmt: skip
        if hit is not None:
            check, verdict_reason, details = "decontam", "contaminated", hit
        else:
            check, verdict = self.policy(sample)
            verdict_reason, details = verdict.reason, verdict.details
        if check is not None:
            out.update(
                reason=verdict_reason, check=check, line=with_filter_meta(sample, check, verdict_reason, details)
            )
            return out
        out.update(reason=None, line=line, group=f"{sample.source}/{sample.row}", pkey=pkey, psig=psig)
        if self.dedup.completions:
            out["ckey"] = exact_key(sample.completion, words=False)
            if self.dedup.near:
                out["csig"] = self.completion_hasher.signature(sample.completion).tobytes()
        return out


def problem_text(sample: Sample) -> str:
    """The problem as decontam and dedup see it: `problem`, else the last user message."""
    if sample.problem.strip():
        return sample.problem
    return next((m.get("content", "") for m in reversed(sample.messages) if m.get("role") == "user"), "")


def with_filter_meta(sample: Sample, check: str, reason: str, details: dict[str, Any]) -> str:
    sample.meta["filter"] = {"check": check, "reason": reason, "details": details}
    return sample.to_json()


_WORKER: _Worker | None = None  # set before forking: worker processes inherit the built policy and indexes


def _judge_batch(lines: list[str]) -> list[dict[str, Any]]:
    assert _WORKER is not None
    return [_WORKER.judge(line) for line in lines]


def _batches(input_dir: Path, size: int):
    batch: list[str] = []
    for line in _lines(input_dir):
        batch.append(line)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def judge_all(worker: _Worker, input_dir: Path, workers: int, batch_size: int):
    """Results for every input line, in input order, from `workers` forked processes (or this one)."""
    global _WORKER
    _WORKER = worker
    batches = _batches(input_dir, batch_size)
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


class _Rejects:
    """A ShardWriter per reason under `rejected/<reason>/`, opened on first use."""

    def __init__(self, root: Path, rows_per_shard: int):
        self.root, self.rows, self.writers = root, rows_per_shard, {}

    def write(self, reason: str, line: str) -> None:
        if reason not in self.writers:
            self.writers[reason] = ShardWriter(self.root / reason, self.rows)
        self.writers[reason].write(line)

    def close(self) -> None:
        for reason, writer in self.writers.items():
            writer.close()
            write_manifest(writer.dir, {"stage": "filter", "rejected": reason, "rows": writer.written})


def _policy_sha(cfg: FilterConfig) -> str:
    return sha256_file(cfg.policy)[:16] if Path(cfg.policy).exists() else ""


def validate(cfg: FilterConfig) -> None:
    """Builds every check of the policy without data (`r1distill run --dry-run`): unknown names and parameters fail."""
    quiet = logging.getLogger("r1distill.filter.checks.length")
    level, quiet.level = quiet.level, logging.WARNING  # "no tokenizer": it is attached only at run time
    try:
        load_policy(cfg.policy, cfg.overrides)
    finally:
        quiet.setLevel(level)


class FilterStage(Stage):
    name, Config, upstream = "filter", FilterConfig, "verify"

    def validate(self, cfg: FilterConfig) -> None:
        validate(cfg)

    def describe(self, cfg: FilterConfig, inp, recipe) -> list[tuple[str, str]]:
        from r1distill.pipeline.describe import model_state

        out = [("policy", f"{cfg.policy}" + (f", overrides {cfg.overrides}" if cfg.overrides else ""))]
        if cfg.tokenizer:
            out.append(("tokenizer", model_state(cfg.tokenizer, recipe.run_dir)))
        return [*out, ("resources", f"CPU: {cfg.workers} worker processes")]

    def prepare(self, cfg: FilterConfig, input_dir: Path, output_dir: Path) -> _Worker:
        return _Worker(cfg)  # a bad policy or benchmark file fails here, before the output folder is touched

    def work(self, cfg: FilterConfig, input_dir: Path, output_dir: Path, worker: _Worker, **kw) -> dict[str, Any]:
        for old in [*output_dir.glob("part-*.jsonl*"), output_dir / "rejected", output_dir / STAGING]:
            shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)
        stats = _Stats(cfg.examples_per_reason)
        rejects = _Rejects(output_dir / "rejected", cfg.rows_per_shard)
        survivors = _first_pass(cfg, worker, input_dir, output_dir, rejects, stats)
        dropped = _dedup(cfg, survivors)
        _second_pass(cfg, output_dir, survivors, dropped, rejects, stats)
        rejects.close()
        shutil.rmtree(output_dir / STAGING, ignore_errors=True)
        report = stats.report(cfg.policy, worker.policy.names, output_dir)
        return {
            "policy": cfg.policy,
            "policy_sha256": _policy_sha(cfg),
            "counts": {"in": stats.n_in, "kept": stats.n_kept, "rejected": stats.n_in - stats.n_kept},
            **report,
        }

    def summary(self, manifest: dict[str, Any]) -> str:
        """One line a person reads at the end of a run: the funnel and where the report is."""
        c = manifest["counts"]
        steps = ", ".join(f"{s['step']} {s['dropped']}" for s in manifest.get("funnel", []) if s.get("dropped"))
        return (
            f"{c['in']} in, {c['kept']} kept; dropped: {steps or 'none'}; report: {manifest.get('report', 'report.md')}"
        )


def _first_pass(
    cfg: FilterConfig, worker: _Worker, input_dir: Path, output_dir: Path, rejects: _Rejects, stats
) -> list:
    """Judge every sample; rejected go to disk now, survivors to the staging folder (their dedup keys stay here)."""
    survivors, groups = [], set()
    with ShardWriter(output_dir / STAGING, cfg.rows_per_shard) as staging:
        for res in judge_all(worker, input_dir, cfg.workers, cfg.batch_size):
            stats.seen(res)
            if res["reason"] is not None:
                rejects.write(res["reason"], res["line"])
                stats.dropped(res, res["reason"], res["check"])
                continue
            staging.write(res["line"])
            del res["line"]
            if res["group"] in groups:
                res.pop("psig", None)  # one signature per prompt row is enough (memory: 1 KB each)
            groups.add(res["group"])
            survivors.append(res)
    log.info("filter: %d in, %d pass the policy", stats.n_in, len(survivors))
    return survivors


def _dedup(cfg: FilterConfig, survivors: list[dict[str, Any]]) -> dict[int, tuple[str, str, dict[str, Any]]]:
    """Index of each survivor dropped as a duplicate -> (reason, step, details). Problems are deduplicated per
    prompt (all k samples of one prompt row stay together); completions per sample."""
    d = cfg.dedup
    dropped: dict[int, tuple[str, str, dict[str, Any]]] = {}
    if d.problems:
        dedup, verdicts = Deduplicator(d.near, d.threshold, d.num_perm), {}
        for i, res in enumerate(survivors):
            group = res["group"]
            if group not in verdicts:
                sig = np.frombuffer(res["psig"], dtype=np.uint64) if res.get("psig") else None
                verdicts[group] = dedup.check(group, res["pkey"], sig) if res["pkey"] else None
            match = verdicts[group]
            if match is not None:
                kind, first, score = match
                dropped[i] = (f"{kind}_problem", "dedup_problem", {"duplicate_of": first, "jaccard": round(score, 3)})
    if d.completions:
        dedup = Deduplicator(d.near, d.threshold, d.num_perm)
        for i, res in enumerate(survivors):
            if i in dropped:
                continue
            sig = np.frombuffer(res["csig"], dtype=np.uint64) if res.get("csig") else None
            match = dedup.check(res["id"], res["ckey"], sig)
            if match is not None:
                kind, first, score = match
                dropped[i] = (
                    f"{kind}_completion",
                    "dedup_completion",
                    {"duplicate_of": first, "jaccard": round(score, 3)},
                )
    log.info("filter: dedup drops %d of %d", len(dropped), len(survivors))
    return dropped


def _second_pass(cfg, output_dir: Path, survivors: list, dropped: dict, rejects: _Rejects, stats: _Stats) -> None:
    """Route the staged survivors: duplicates to `rejected/<reason>/`, the rest (raw lines) to the output."""
    with ShardWriter(output_dir, cfg.rows_per_shard) as kept:
        for i, line in enumerate(_lines(output_dir / STAGING)):
            if i in dropped:
                reason, check, details = dropped[i]
                rejects.write(reason, with_filter_meta(Sample.from_dict(json.loads(line)), check, reason, details))
                stats.dropped(survivors[i], reason, check)
            else:
                kept.write(line)
                stats.kept(survivors[i])


# What `Sample.from_dict` cannot do without: a record missing one is refused by the reader with its file and line.
REQUIRED = tuple(name for name, f in Sample.__dataclass_fields__.items() if name != "meta")


def _lines(folder: Path):
    """Each record's raw line (what the workers judge and the output keeps verbatim), read alongside the project's
    record reader, which names the file and line of a bad byte, a torn or malformed line or a missing field."""

    def raw():
        for path in shard_paths(folder):
            with open(path, "rb") as f:
                yield from f

    for _record, line in zip(iter_records(folder, required=REQUIRED), raw(), strict=True):
        yield line.decode("utf-8").rstrip("\n")


class _Stats:
    """Counters for the funnel, per reason and domain, example ids and length distributions."""

    def __init__(self, examples: int):
        self.examples = examples
        self.n_in = self.n_kept = 0
        self.by_reason: Counter[str] = Counter()
        self.check_of: dict[str, str] = {}
        self.by_domain: dict[str, Counter[str]] = defaultdict(Counter)
        self.example_ids: dict[str, list[str]] = defaultdict(list)
        self.len_in: list[int] = []
        self.len_kept: list[int] = []
        self.tok_in: list[int] = []
        self.tok_kept: list[int] = []

    def seen(self, res: dict[str, Any]) -> None:
        self.n_in += 1
        self.by_domain[res["domain"]]["in"] += 1
        self.len_in.append(res["chars"])
        if res.get("tokens") is not None:
            self.tok_in.append(res["tokens"])

    def dropped(self, res: dict[str, Any], reason: str, check: str) -> None:
        self.by_reason[reason] += 1
        self.check_of[reason] = check
        self.by_domain[res["domain"]][reason] += 1
        if len(self.example_ids[reason]) < self.examples:
            self.example_ids[reason].append(res["id"])

    def kept(self, res: dict[str, Any]) -> None:
        self.n_kept += 1
        self.by_domain[res["domain"]]["kept"] += 1
        self.len_kept.append(res["chars"])
        if res.get("tokens") is not None:
            self.tok_kept.append(res["tokens"])

    def report(self, policy: str, check_names: list[str], out_dir: Path) -> dict[str, Any]:
        """The manifest's report section; also renders `report.md` and its charts into the output folder."""
        order = _funnel_order(check_names, self.by_reason, self.check_of)
        funnel, remaining = [{"step": "in", "count": self.n_in, "remaining": self.n_in}], self.n_in
        for reason in order:
            remaining -= self.by_reason[reason]
            funnel.append({"step": reason, "check": self.check_of[reason], "dropped": self.by_reason[reason],
                           "remaining": remaining})  # fmt: skip
        funnel.append({"step": "kept", "count": self.n_kept, "remaining": self.n_kept})
        report = {
            "funnel": funnel,
            "reasons": {r: self.by_reason[r] for r in order},
            "domains": {d: dict(c) for d, c in sorted(self.by_domain.items())},
            "examples": {r: self.example_ids[r] for r in order},
            "lengths": {
                "completion_chars": {"in": length_summary(self.len_in), "kept": length_summary(self.len_kept)},
                "completion_tokens": {"in": length_summary(self.tok_in), "kept": length_summary(self.tok_kept)},
            },
            "report": "report.md",
        }
        write_report(out_dir, policy, report, self.len_in, self.len_kept)
        return report


def _funnel_order(check_names: list[str], by_reason: Counter[str], check_of: dict[str, str]) -> list[str]:
    """Reasons in pipeline order: decontam, the policy's checks in policy order, then dedup."""
    rank = {name: i for i, name in enumerate(["decontam", *check_names, "dedup_problem", "dedup_completion"])}
    return sorted(by_reason, key=lambda r: (rank.get(check_of[r], len(rank)), -by_reason[r], r))


STAGE = FilterStage()
run, main, summary = STAGE.run, STAGE.main, STAGE.summary


if __name__ == "__main__":
    sys.exit(main())
