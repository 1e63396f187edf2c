"""Verify: grade every generated sample and keep what the rejection-sampling policy says.

Reads the generate folder, grades each sample with the shared graders (`r1distill.grading`), stores the verdict in
`sample.meta["verify"]` (`correct`, `reason`, `extracted`, and `isolation` for code) and writes the kept samples.

Policy (`verify.policy` in the recipe): `keep: correct` keeps correct samples only, `keep: all` keeps every sample
with its verdict; `max_correct_per_prompt: m` keeps the m correct samples with the smallest k; `drop_always_solved`
and `drop_never_solved` drop every sample of a prompt the teacher solved in all / none of its samples.

Grading (see `r1distill.grading`): math/science answers with math-verify under a hard per-item deadline
(`verify.math.timeout_s`), code in the sandbox (`verify.code`: CPU-time limit, memory, concurrency, isolation level).
A completion that never closes `<think>` has no answer (`no_answer`, or `truncated` when it hit max_tokens) unless
`lenient_think: true`, meant for small teachers that never learnt the tag.

Two phases make a killed run resumable: grading appends to `OUTPUT/.graded/` (a restart skips the ids already
there), then selection rewrites the output shards from it and writes the manifest last.

    r1distill verify -c pipelines/quickstart.yaml            # or: python -m r1distill.verify -c ...
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from r1distill.core.config import ConfigError, config_hash
from r1distill.core.records import key_hash, prompt_key
from r1distill.core.stage import Stage
from r1distill.core.store import ShardWriter, atomic_write_text, batched, iter_records, manifest_hash, recover
from r1distill.grading import Grade, Grader
from r1distill.grading.judge import JudgeConfig, judge_undecided
from r1distill.grading.sandbox import DEFAULT_PYTHON, LEVELS, Limits

log = logging.getLogger(__name__)

GRADED = ".graded"
KEEP_CHOICES = ("correct", "all")
REQUIRED = ("id", "domain", "reference", "completion")


@dataclass
class PolicyConfig:
    keep: str = "correct"
    max_correct_per_prompt: int | None = None
    drop_always_solved: bool = False
    drop_never_solved: bool = False


@dataclass
class MathConfig:
    timeout_s: float = 5.0
    memory_mb: int | None = 4096


@dataclass
class CodeConfig:
    timeout_s: float = 10.0
    memory_mb: int = 512
    output_mb: int = 8
    python: str = DEFAULT_PYTHON
    isolation: str | None = None  # force a sandbox level (see verifiers.sandbox); default: the strongest available
    concurrency: int | None = None  # sandboxes at once; default 4 x workers (runs are judged by CPU time)


@dataclass
class VerifyConfig:
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    math: MathConfig = field(default_factory=MathConfig)
    code: CodeConfig = field(default_factory=CodeConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)  # LLM fallback for answers the rules cannot decide; off
    # Grade a completion that stopped without closing <think> on its whole text (R1 practice: `no_answer`). For small
    # teachers that never emit </think>, such as the quickstart's SmolLM2-135M.
    lenient_think: bool = False
    workers: int = 2
    batch_size: int = 256
    rows_per_shard: int = 10_000


Config = VerifyConfig


def validate(cfg: VerifyConfig) -> None:
    """The policy and grading settings, checked offline (also by `r1distill run --dry-run`)."""
    if cfg.policy.keep not in KEEP_CHOICES:
        raise ConfigError(f"verify.policy.keep: {cfg.policy.keep!r} is not one of: {', '.join(KEEP_CHOICES)}")
    m = cfg.policy.max_correct_per_prompt
    if m is not None and m < 1:
        raise ConfigError(f"verify.policy.max_correct_per_prompt: must be >= 1 or null (no cap), got {m}")
    if cfg.code.isolation is not None and cfg.code.isolation not in LEVELS:
        raise ConfigError(f"verify.code.isolation: {cfg.code.isolation!r} is not one of: {', '.join(LEVELS)} (or null)")
    for name, value in (("math.timeout_s", cfg.math.timeout_s), ("code.timeout_s", cfg.code.timeout_s)):
        if value <= 0:
            raise ConfigError(f"verify.{name}: must be > 0 seconds, got {value}")
    if cfg.workers < 1 or cfg.batch_size < 1 or (cfg.code.concurrency is not None and cfg.code.concurrency < 1):
        raise ConfigError("verify.workers, verify.batch_size and verify.code.concurrency must be >= 1")


def _prompt_of(record: dict[str, Any]) -> str:
    if "source" in record and "row" in record:
        return prompt_key(record["source"], record["row"])
    return str(record["id"]).rsplit("/", 1)[0]


def _grading_stamp(cfg: VerifyConfig, input_dir: Path) -> str:
    grading = {"math": asdict(cfg.math), "code": asdict(cfg.code), "lenient_think": cfg.lenient_think,
               "judge": asdict(cfg.judge)}  # a judge switched on mid-run regrades: its verdicts differ  # fmt: skip
    return json.dumps({"grading": config_hash(grading), "input": manifest_hash(input_dir)})


def _prepare_graded(graded: Path, cfg: VerifyConfig, input_dir: Path) -> set[int]:
    """Ids (their `key_hash`es: a small int a sample, not its id string) already graded by an interrupted run of
    the same grading config on the same input (else start over)."""
    stamp = graded / "stamp.json"
    want = _grading_stamp(cfg, input_dir)
    if graded.exists() and (not stamp.exists() or stamp.read_text() != want):
        shutil.rmtree(graded)
    graded.mkdir(parents=True, exist_ok=True)
    atomic_write_text(stamp, want)
    recover(graded)
    return {key_hash(r["id"]) for r in iter_records(graded)}


def _batches(input_dir: Path, done: set[int], size: int) -> Iterator[list[dict[str, Any]]]:
    """The records not graded yet, in batches; a duplicate id is graded once (the first) and counted."""
    seen = set(done)
    duplicates = 0

    def fresh() -> Iterator[dict[str, Any]]:
        nonlocal duplicates
        for record in iter_records(input_dir, required=REQUIRED):
            rid = key_hash(record["id"])
            if rid in seen:
                duplicates += rid not in done
                continue
            seen.add(rid)
            yield record

    yield from batched(fresh(), size)
    if duplicates:
        log.warning("verify: %s holds %d duplicate sample id(s); graded the first of each", input_dir, duplicates)


def _grade_all(cfg: VerifyConfig, input_dir: Path, graded: Path, done: set[int]) -> int:
    """Grade every sample not in `done`, appending to the `graded` folder; returns how many were graded now."""
    m, c = cfg.math, cfg.code
    limits = Limits(c.timeout_s, c.memory_mb, c.output_mb << 20)
    new = 0
    with (
        Grader(
            m.timeout_s, m.memory_mb, limits, cfg.workers, c.python, c.isolation, cfg.lenient_think, c.concurrency
        ) as grader,
        ShardWriter(graded, cfg.rows_per_shard) as writer,
    ):
        for batch in _batches(input_dir, done, cfg.batch_size):
            grades: list[Grade] = judge_undecided(cfg.judge, batch, grader.grade(batch), graded)
            for record, grade in zip(batch, grades, strict=True):
                writer.write({**record, "meta": {**(record.get("meta") or {}), "verify": grade.to_meta()}})
            new += len(batch)
            log.info("verify: graded %d new samples (%d from an earlier run)", new, len(done))
    return new


def _select(cfg: VerifyConfig, graded: Path, output_dir: Path) -> dict[str, Any]:
    """Apply the policy to the graded records, write the output shards, and return counts and stats."""
    p = cfg.policy
    # Per prompt: [samples, the k of each correct one]; a sample costs a counter tick, a correct one an int.
    per_prompt: dict[str, list] = defaultdict(lambda: [0, []])
    for r in iter_records(graded):
        entry = per_prompt[_prompt_of(r)]
        entry[0] += 1
        if r["meta"]["verify"]["correct"]:
            entry[1].append(int(r.get("k", 0)))
    dropped_prompts: dict[str, str] = {}
    keep_k: dict[str, set[int]] = {}
    for key, (total, correct) in per_prompt.items():
        if p.drop_always_solved and len(correct) == total:
            dropped_prompts[key] = "prompt_always_solved"
        elif p.drop_never_solved and not correct:
            dropped_prompts[key] = "prompt_never_solved"
        correct_k = sorted(correct)
        keep_k[key] = set(correct_k[: p.max_correct_per_prompt] if p.max_correct_per_prompt else correct_k)

    for stale in [*output_dir.glob("part-*.jsonl"), *output_dir.glob("part-*.jsonl.tmp")]:
        stale.unlink()  # a selection interrupted earlier: it is cheap and deterministic, so redo it whole
    by_reason: Counter[str] = Counter()
    dropped: Counter[str] = Counter()
    isolation: Counter[str] = Counter()
    by_domain: dict[str, Counter[str]] = defaultdict(Counter)
    with ShardWriter(output_dir, cfg.rows_per_shard) as writer:
        for r in iter_records(graded):
            verdict, key, domain = r["meta"]["verify"], _prompt_of(r), str(r.get("domain"))
            by_reason[verdict["reason"]] += 1
            by_domain[domain]["samples"] += 1
            by_domain[domain]["correct"] += bool(verdict["correct"])
            if verdict["correct"] and verdict.get("verdict_by") == "judge":
                by_domain[domain]["correct_by_judge"] += 1
            if verdict.get("isolation"):
                isolation[verdict["isolation"]] += 1
            if key in dropped_prompts:
                drop = dropped_prompts[key]
            elif verdict["correct"]:
                drop = None if int(r.get("k", 0)) in keep_k[key] else "over_max_correct_per_prompt"
            else:
                drop = None if p.keep == "all" else verdict["reason"]
            if drop:
                dropped[drop] += 1
                continue
            by_domain[domain]["kept"] += 1
            writer.write(r)
    n = sum(by_reason.values())
    n_correct = sum(c["correct"] for c in by_domain.values())
    counts = {
        "samples": n,
        "correct": n_correct,
        "correct_by_judge": sum(c["correct_by_judge"] for c in by_domain.values()),  # of `correct`: an LLM's word
        "kept": writer.written,
        "dropped": dict(sorted(dropped.items())),
        "prompts": len(per_prompt),
        "prompts_always_solved": sum(len(correct) == total for total, correct in per_prompt.values()),
        "prompts_never_solved": sum(not correct for _, correct in per_prompt.values()),
        "prompts_dropped": len(dropped_prompts),
    }
    stats = {
        "by_reason": dict(sorted(by_reason.items())),
        "by_domain": {d: dict(c) for d, c in sorted(by_domain.items())},
        "pass_rate": round(n_correct / n, 4) if n else None,
        "isolation": dict(isolation),
    }
    return {"counts": counts, "stats": stats}


class VerifyStage(Stage):
    name, Config, upstream = "verify", VerifyConfig, "generate"

    def validate(self, cfg: VerifyConfig) -> None:
        validate(cfg)

    def describe(self, cfg: VerifyConfig, inp, recipe) -> list[tuple[str, str]]:
        return [("resources", f"CPU: {cfg.workers} worker processes")]

    def work(self, cfg: VerifyConfig, input_dir: Path, output_dir: Path, prepared, **kw) -> dict[str, Any]:
        """Grade (resuming what an interrupted run of the same grading left in `OUTPUT/.graded/`), then select."""
        graded = output_dir / GRADED
        done = _prepare_graded(graded, cfg, input_dir)
        if done:
            log.info("verify: resuming, %d samples already graded", len(done))
        new = _grade_all(cfg, input_dir, graded, done)
        result = _select(cfg, graded, output_dir)
        result["counts"].update(graded_now=new, graded_before=len(done))
        shutil.rmtree(graded, ignore_errors=True)
        return result

    def summary(self, manifest: dict[str, Any]) -> str:
        """One line a person reads at the end of a run."""
        c = manifest["counts"]
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(c.get("dropped", {}).items()))
        judged = f", {c['correct_by_judge']} by the judge" if c.get("correct_by_judge") else ""
        share = c["correct"] / max(c["samples"], 1)
        return (
            f"{c['samples']} samples graded: {c['correct']} correct ({share:.0%}{judged}), "
            f"{c['kept']} kept; dropped: {dropped or 'none'}; prompts never solved {c.get('prompts_never_solved', 0)}, "
            f"always solved {c.get('prompts_always_solved', 0)}"
        )


STAGE = VerifyStage()
run, main, summary = STAGE.run, STAGE.main, STAGE.summary


if __name__ == "__main__":
    sys.exit(main())
