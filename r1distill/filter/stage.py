"""Filter: R1's rules, decontamination and dedup over verified samples; every drop kept on disk with its reason.

    r1distill filter -c pipelines/quickstart.yaml          (the recipe's `filter:` section)

Funnel order: decontamination, then the policy's checks in order (the first failing check names the reason), then
problem dedup and completion dedup. Kept samples go to `OUTPUT/part-*.jsonl`, dropped ones to
`OUTPUT/rejected/<reason>/part-*.jsonl` with `meta["filter"] = {"check", "reason", "details", "evidence"}`: the
evidence is the offending excerpt (at most 300 characters, with a little context), its offset in the part it comes
from, and the threshold it crossed. The report is in the manifest (funnel, counts per reason and domain, example ids
and evidence, lengths) and in `report.md` (+ PNG charts). `r1distill filter --explain SAMPLE_ID -c RECIPE` prints
every check's verdict on one sample (`explain.py`).
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from r1distill.core.records import Sample
from r1distill.core.stage import Stage
from r1distill.core.store import ShardWriter, StageError, sha256_file, write_manifest
from r1distill.filter.checks.policy import load_policy
from r1distill.filter.dedup import Deduplicator
from r1distill.filter.funnel import Funnel
from r1distill.filter.judge import Judge, Judged, dedup_evidence, judge_all, locate, read_lines, with_filter_meta

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

    def prepare(self, cfg: FilterConfig, input_dir: Path, output_dir: Path, **kw: Any) -> Judge:
        return Judge(cfg)  # a bad policy or benchmark file fails here, before the output folder is touched

    def work(self, cfg: FilterConfig, input_dir: Path, output_dir: Path, worker: Judge, **kw) -> dict[str, Any]:
        for old in [*output_dir.glob("part-*.jsonl*"), output_dir / "rejected", output_dir / STAGING]:
            shutil.rmtree(old) if old.is_dir() else old.unlink(missing_ok=True)
        stats = Funnel(cfg.examples_per_reason)
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
    cfg: FilterConfig, worker: Judge, input_dir: Path, output_dir: Path, rejects: _Rejects, stats: Funnel
) -> list[Judged]:
    """Judge every sample; rejected go to disk now, survivors to the staging folder (their dedup keys stay here)."""
    survivors, groups = [], set()
    with ShardWriter(output_dir / STAGING, cfg.rows_per_shard) as staging:
        for n, res in enumerate(judge_all(worker, input_dir, cfg.workers, cfg.batch_size), 1):
            if res.error is not None:
                raise StageError(
                    f"{locate(input_dir, n)}: {res.error}; filter reads a finished verify folder: rerun verify"
                )
            stats.seen(res)
            if res.reason is not None:
                rejects.write(res.reason, res.line)
                stats.dropped(res, res.reason, res.check)
                continue
            staging.write(res.line)
            res.line = None
            if res.group in groups:
                res.psig = None  # one signature per prompt row is enough (memory: 1 KB each)
            groups.add(res.group)
            survivors.append(res)
    log.info("filter: %d in, %d pass the policy", stats.n_in, len(survivors))
    return survivors


def _dedup(cfg: FilterConfig, survivors: list[Judged]) -> dict[int, tuple[str, str, dict[str, Any]]]:
    """Index of each survivor dropped as a duplicate -> (reason, step, details). Problems are deduplicated per
    prompt (all k samples of one prompt row stay together); completions per sample."""
    d = cfg.dedup
    dropped: dict[int, tuple[str, str, dict[str, Any]]] = {}
    if d.problems:
        dedup, verdicts = Deduplicator(d.near, d.threshold, d.num_perm), {}
        for i, res in enumerate(survivors):
            group = res.group
            if group not in verdicts:
                sig = np.frombuffer(res.psig, dtype=np.uint64) if res.psig else None
                verdicts[group] = dedup.check(group, res.pkey, sig) if res.pkey else None
            match = verdicts[group]
            if match is not None:
                kind, first, score = match
                dropped[i] = (f"{kind}_problem", "dedup_problem", {"duplicate_of": first, "jaccard": round(score, 3)})
    if d.completions:
        dedup = Deduplicator(d.near, d.threshold, d.num_perm)
        for i, res in enumerate(survivors):
            if i in dropped:
                continue
            sig = np.frombuffer(res.csig, dtype=np.uint64) if res.csig else None
            match = dedup.check(res.id, res.ckey, sig)
            if match is not None:
                kind, first, score = match
                dropped[i] = (
                    f"{kind}_completion",
                    "dedup_completion",
                    {"duplicate_of": first, "jaccard": round(score, 3)},
                )
    log.info("filter: dedup drops %d of %d", len(dropped), len(survivors))
    return dropped


def _second_pass(
    cfg: FilterConfig, output_dir: Path, survivors: list[Judged], dropped: dict, rejects: _Rejects, stats: Funnel
) -> None:
    """Route the staged survivors: duplicates to `rejected/<reason>/`, the rest (raw lines) to the output."""
    with ShardWriter(output_dir, cfg.rows_per_shard) as kept:
        for i, line in enumerate(read_lines(output_dir / STAGING)):
            if i in dropped:
                reason, check, details = dropped[i]
                sample = Sample.from_dict(json.loads(line))
                ev = dedup_evidence(sample, check, details, cfg.dedup.threshold)
                rejects.write(reason, with_filter_meta(sample, check, reason, details, ev))
                survivors[i].evidence = ev
                stats.dropped(survivors[i], reason, check)
            else:
                kept.write(line)
                stats.kept(survivors[i])


STAGE = FilterStage()
run, summary = STAGE.run, STAGE.summary


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if any(a == "--explain" or a.startswith("--explain=") for a in args):
        from r1distill.filter.explain import main as explain_main

        return explain_main(args)
    return STAGE.main(argv)


if __name__ == "__main__":
    sys.exit(main())
