"""evaluate: sample models on registered benchmarks, grade every sample, report pass@1 / pass@k / cons@k with CIs.

    python -m r1distill.evaluate --config pipelines/quickstart.yaml [--model M] [--benchmarks gsm8k,math500] [--n 4]
        [evaluate.baselines.teacher=bundled:smollm2]

The model is the run's trained student by default: the stage's input folder, RUN_DIR/rl when the recipe has an rl
stage, else RUN_DIR/distill when it has distill, else RUN_DIR/sft (a finished one: its manifest.json must be there).
`evaluate.model` names another model instead. `evaluate.baselines` ({label: model}) adds models evaluated the same
way beside it, e.g. the teacher.

Per model and benchmark, into OUTPUT/<bench>/ (baselines: OUTPUT/baselines/<label>/<bench>/): `problems.jsonl` (the
rows sampled from), `samples/` (a generate run: killed runs resume and only missing samples are drawn),
`scored.jsonl` (each sample with its grade). Then OUTPUT/report.json (metrics + environment) and OUTPUT/report.md
(the models side by side, with DeepSeek-R1's published numbers where they apply and the caveats of comparing with
them). The manifest is written last.

Truncated answers (finish_reason "length") are counted in their own `truncation_rate` as well as being wrong.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

from r1distill.core.stage import Flag, Stage
from r1distill.core.store import (
    MANIFEST,
    StageError,
    atomic_write_text,
    iter_records,
    manifest_hash,
    read_manifest,
    write_jsonl_atomic,
)
from r1distill.evaluate import benchmarks, metrics
from r1distill.evaluate.report import caveats, environment, report_markdown, table_rows
from r1distill.generate import stage as generate
from r1distill.generate.engines import Engine
from r1distill.generate.engines.openai_http import HTTPSettings
from r1distill.generate.prompts import SourceConfig
from r1distill.grading.grader import MATH_DOMAINS, Grader
from r1distill.grading.math import CORRECT, MathPool, math_equal

log = logging.getLogger(__name__)


@dataclass
class EvaluateConfig:
    """The recipe's `evaluate:` section. `sampling` is merged over R1's (temperature 0.6, top-p 0.95, 32768 tokens).

    `model`: None (default) = the run's trained student, the stage's input folder; else a folder, Hub id or
    bundled:NAME. `baselines`: {label: model} evaluated with the same protocol beside it (e.g. `teacher:
    bundled:smollm2`, or the untrained base student). `published_model`: the R1-Distill model whose published numbers
    stand beside the model's (e.g. DeepSeek-R1-Distill-Qwen-1.5B for a student trained from Qwen2.5-Math-1.5B); a
    model named like one of them gets its own numbers anyway.
    `data_root`: a folder holding the benchmarks' local JSONL files (None: load them from the Hub).
    `ks`: the k of pass@k (those above n are skipped); cons@n is reported for math/science benchmarks.
    `lenient_think`: grade completions that stopped without closing `<think>` on their whole text (small models).
    """

    HASH_EXCLUDE = ("workers", "http", "max_in_flight")

    model: str | None = None
    baselines: dict[str, str] = field(default_factory=dict)
    published_model: str | None = None
    engine: str = "vllm"
    benchmarks: list[str] = field(default_factory=lambda: ["aime24", "math500"])
    n: int = 4
    sampling: dict[str, Any] = field(default_factory=dict)
    vllm: dict[str, Any] = field(default_factory=dict)
    http: HTTPSettings | None = None
    limit: int | None = None
    data_root: str | None = None
    ks: list[int] = field(default_factory=lambda: [1])
    system_prompt: str | None = None
    prefill: str = "<think>\n"
    seed: int | None = 0
    lenient_think: bool = False
    math_timeout_s: float = 5.0
    workers: int = 2
    max_in_flight: int | None = None  # requests held by the engine at once (memory, HTTP concurrency), not results

    def hash_extra(self) -> dict[str, str | None]:
        """The manifest hash of each named model folder that is a finished stage: retraining it re-evaluates it."""
        refs = [self.model, *self.baselines.values()]
        return {r: manifest_hash(Path(r).expanduser()) for r in refs if isinstance(r, str) and _stage_folder(r)}


Config = EvaluateConfig

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
STAMP = "model.json"  # in each model's folder: which model (and which training of it) its samples come from


def _stage_folder(ref: str) -> bool:
    path = Path(ref).expanduser()
    return path.is_dir() and (path / MANIFEST).exists()


def upstream(recipe: Any) -> str | None:
    """The run-dir folder evaluate reads: the trained student (rl's output when the recipe has an rl stage, else
    distill's when it has distill, else sft's), or None when `evaluate.model` names the model."""
    section = recipe.data.get("evaluate") or {}
    if isinstance(section, dict) and section.get("model"):
        return None
    return next((s for s in ("rl", "distill") if s in recipe.data), "sft")


@dataclass(frozen=True)
class Subject:
    """One model under evaluation: its label in the report, its reference, its folder in OUTPUT."""

    label: str
    ref: str
    out: Path
    published_as: str


def check_model_folder(ref: str, where: str) -> None:
    """Refuse a training output (sft/rl) that has no manifest.json: its weights belong to an unfinished run."""
    path = Path(ref).expanduser()
    if path.is_dir() and not (path / MANIFEST).exists():
        if (path / "checkpoints").is_dir() or (path / "trainer_state.json").exists():
            raise StageError(
                f"{where}: {path} is an unfinished training run (checkpoints but no {MANIFEST}); rerun its "
                "sft/rl command to finish it (it resumes), or point at a finished model"
            )


def subjects(cfg: EvaluateConfig, input_dir: Path | None, output_dir: Path) -> list[Subject]:
    """The evaluated model first (the student unless `model` is set), then the baselines; all checked before any
    engine starts."""
    if cfg.model:
        check_model_folder(cfg.model, "evaluate.model")
        models = [Subject("model", cfg.model, output_dir, cfg.published_model or cfg.model)]
    elif input_dir is None:
        raise StageError(
            "evaluate.model: not set, and no trained student to default to; set evaluate.model (a folder, Hub id or "
            "bundled:smollm2), or add an sft stage so evaluate reads RUN_DIR/sft"
        )
    else:
        student = Path(input_dir)
        if not student.is_dir():
            raise StageError(
                f"evaluate: no trained student at {student}; run the sft (or rl) stage first, or set evaluate.model"
            )
        check_model_folder(str(student), "evaluate")
        if not (student / MANIFEST).exists():
            raise StageError(f"evaluate: {student} has no {MANIFEST}; its training did not finish. Run it (again).")
        models = [Subject("student", str(student), output_dir, cfg.published_model or str(student))]
    for label, ref in cfg.baselines.items():
        where = f"evaluate.baselines.{label}"
        if not _LABEL.match(str(label)):
            raise StageError(f"{where}: a label names a folder: letters, digits, '.', '_' or '-' only")
        if not isinstance(ref, str) or not ref:
            raise StageError(f"{where}: give a model (a folder, Hub id or bundled:smollm2)")
        check_model_folder(ref, where)
        models.append(Subject(str(label), ref, output_dir / "baselines" / str(label), ref))
    if cfg.published_model and Path(cfg.published_model).name.lower() not in {
        m.lower() for m in benchmarks.PUBLISHED_MODELS
    }:
        raise StageError(
            f"evaluate.published_model: {cfg.published_model!r} has no published numbers; one of "
            + ", ".join(benchmarks.PUBLISHED_MODELS)
        )
    return models


def _generate_config(
    cfg: EvaluateConfig, model: str, bench: benchmarks.Benchmark, problems: Path
) -> generate.GenerateConfig:
    source = SourceConfig(name=bench.name, path=str(problems), id_field="id", domain=bench.domain)
    return generate.GenerateConfig(
        sources=[source],
        model=model,
        engine=cfg.engine,
        n=cfg.n,
        system_prompt=cfg.system_prompt,
        prompt_template=bench.prompt_template,
        prefill=cfg.prefill,
        sampling=dict(cfg.sampling),
        vllm=dict(cfg.vllm),
        http=cfg.http,
        seed=cfg.seed,
        max_in_flight=cfg.max_in_flight,
    )


def _forget_retrained(subject: Subject) -> None:
    """Drop the samples of a model folder that was retrained since they were drawn (same path, new manifest): they
    describe weights that no longer exist, and generate, which knows models by path, would resume from them."""
    path = Path(subject.ref).expanduser()
    ident = {"model": subject.ref, "manifest_hash": manifest_hash(path) if path.is_dir() else None}
    stamp = subject.out / STAMP
    old = json.loads(stamp.read_text(encoding="utf-8")) if stamp.exists() else None
    if old == ident:
        return
    if old and old.get("model") == ident["model"]:
        log.warning("evaluate: %s changed since its last evaluation; its old samples are discarded", subject.ref)
        for name in benchmarks.names():
            shutil.rmtree(subject.out / name / "samples", ignore_errors=True)
            (subject.out / name / "scored.jsonl").unlink(missing_ok=True)
    atomic_write_text(stamp, json.dumps(ident) + "\n")  # after the removal: a kill in between removes again


def _sweep_temp_files(root: Path) -> None:
    """Remove what atomic writes killed midway left behind (`.NAME.XXXX.tmp`); call only under the folder's lock.
    Unsealed shards (`part-*.jsonl.tmp`) are not touched: generate recovers their records."""
    for path in root.rglob(".*.tmp"):
        path.unlink(missing_ok=True)


def _write_problems(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write the rows only when they changed, so a resumed run leaves the file (and its mtime) alone."""
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text)


def score(records: list[dict[str, Any]], grader: Grader) -> list[dict[str, Any]]:
    """Each sample record with a `grade` entry (correct, reason, extracted, ...) added."""
    grades = grader.grade(records)
    return [{**rec, "grade": g.to_meta()} for rec, g in zip(records, grades, strict=True)]


def _equal(a: str, b: str) -> bool:
    """In-process math equivalence (no deadline): for tests and small inputs; runs use `pool_equivalence`."""
    try:
        return math_equal(a, b)
    except Exception:  # math-verify may raise on odd input; unequal is the safe answer for a vote
        return a == b


def pool_equivalence(pool: MathPool, groups: Iterable[Sequence[str | None]]) -> Callable[[str, str], bool]:
    """An `equal` for cons@k: each pair of distinct answers within a problem is compared once in the math pool,
    under its hard deadline (a model's answers can make math-verify hang); a timeout counts as unequal."""
    pairs: set[tuple[str, str]] = set()
    for answers in groups:
        pairs.update(combinations(sorted({a for a in answers if a}), 2))
    jobs = sorted(pairs)
    known: dict[tuple[str, str], bool] = {}
    for (a, b), (reason, _) in zip(jobs, pool.grade(jobs), strict=True):
        known[(a, b)] = known[(b, a)] = reason == CORRECT
    return lambda a, b: a == b or known.get((a, b), False)


def bench_metrics(
    scored: list[dict[str, Any]], domain: str, n: int, ks: list[int], equal: Callable[[str, str], bool] | None = None
) -> dict[str, Any]:
    """Metrics of one benchmark from its scored samples (see `r1distill.evaluate.metrics` for the definitions).

    `equal` groups extracted answers for cons@n (default: in-process math equivalence)."""
    by_problem: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in scored:
        by_problem[rec["row"]].append(rec)
    for recs in by_problem.values():
        recs.sort(key=lambda r: r["k"])
    per_problem = [metrics.rate([r["grade"]["correct"] for r in recs]) for recs in by_problem.values()]
    mean, low, high = metrics.mean_ci(per_problem)
    out: dict[str, Any] = {
        "problems": len(by_problem),
        "samples": len(scored),
        "n": n,
        "pass@1": mean,
        "pass@1_ci95": [low, high],
        "ci_method": "mean of per-problem pass rates +- 1.96 SE over problems",
    }
    if n == 1:  # one sample per problem: a plain binomial, where Wilson's interval behaves better near 0 and 1
        out["pass@1_wilson95"] = list(metrics.wilson(sum(r["grade"]["correct"] for r in scored), len(scored)))
    for k in sorted(set(ks)):
        if 1 < k <= n:
            vals = [
                metrics.pass_at_k(len(recs), sum(r["grade"]["correct"] for r in recs), k)
                for recs in by_problem.values()
            ]
            out[f"pass@{k}"] = sum(vals) / len(vals)
    if domain in MATH_DOMAINS and n > 1:
        vote_equal = equal or _equal
        votes = [
            metrics.cons_at_k(
                [r["grade"].get("extracted") for r in recs],
                [r["grade"]["correct"] for r in recs],
                equal=vote_equal,
            )
            for recs in by_problem.values()
        ]
        out[f"cons@{n}"] = sum(votes) / len(votes)
    reasons = Counter(r["grade"]["reason"] for r in scored)
    out["truncation_rate"] = metrics.rate([r["meta"].get("finish_reason") == "length" for r in scored])
    out["no_answer_rate"] = metrics.rate([r["grade"]["reason"] == "no_answer" for r in scored])
    tokens = [r["meta"].get("completion_tokens", 0) for r in scored]
    out["mean_completion_tokens"] = sum(tokens) / max(len(tokens), 1)
    out["reasons"] = dict(sorted(reasons.items()))
    return out


def validate(cfg: EvaluateConfig) -> None:
    """Checks that need no model and no data (`r1distill run --dry-run`): engine, sampling, benchmark names."""
    generate.check_engine(cfg.engine, cfg.http, {**generate.R1_SAMPLING, **cfg.sampling}, "evaluate")
    for name in cfg.benchmarks:
        benchmarks.get(name)


class EvaluateStage(Stage):
    name, Config, upstream, needs_input = "evaluate", EvaluateConfig, None, False
    flags = {
        "--model": Flag("evaluate.model", str, "the model (path, Hub id or bundled:NAME; default: the run's student)"),
        "--benchmarks": Flag(
            "evaluate.benchmarks", lambda text: _benchmark_list(text), "comma-separated benchmark names", "A,B"
        ),
        "--n": Flag("evaluate.n", int, "samples per problem", "N"),
        "--limit": Flag("evaluate.limit", int, "at most this many problems per benchmark", "N"),
    }

    def input_stage(self, recipe: Any) -> str | None:
        return upstream(recipe)

    def validate(self, cfg: EvaluateConfig) -> None:
        validate(cfg)
        if cfg.n < 1:
            raise StageError("evaluate.n: must be at least 1")
        if any(k < 1 for k in cfg.ks):
            raise StageError(f"evaluate.ks: every k must be at least 1 (got {cfg.ks})")
        if not cfg.benchmarks:
            raise StageError("evaluate.benchmarks: name at least one of " + ", ".join(benchmarks.names()))

    def describe(self, cfg: EvaluateConfig, inp, recipe) -> list[tuple[str, str]]:
        from r1distill.pipeline import describe

        if cfg.model is None and cfg.engine != "openai":
            model = ("model", f"the run's trained student ({inp or recipe.run_dir / 'sft'})")
        else:
            model = describe.model_line("model", cfg, recipe.run_dir)
        return [
            model,
            *[
                ("baseline", f"{label}: {describe.model_state(ref, recipe.run_dir)}")
                for label, ref in cfg.baselines.items()
            ],
            ("benchmarks", f"{', '.join(cfg.benchmarks)} (n={cfg.n}, {describe.sampling_text(cfg.sampling)})"),
            describe.engine_line(cfg, recipe),
        ]

    def prepare(self, cfg: EvaluateConfig, input_dir: Path | None, output_dir: Path) -> tuple:
        """Every benchmark and model checked before any engine starts."""
        benches = [benchmarks.get(name) for name in cfg.benchmarks]
        models = subjects(cfg, input_dir, output_dir)
        rows = {b.name: b.rows(cfg.data_root, cfg.limit) for b in benches}
        return benches, models, rows

    def work(
        self,
        cfg: EvaluateConfig,
        input_dir: Path | None,
        output_dir: Path,
        prepared: tuple,
        engine: Engine | None = None,
        engines: dict[str, Engine] | None = None,
        **kw: Any,
    ) -> dict[str, Any]:
        """Evaluate the model (default: the student in `input_dir`) and each baseline on every benchmark; the
        manifest's `report` is also report.json's content.

        `engine` (the evaluated model's) and `engines` (by baseline label) let a caller share running engines; by
        default one is started per model, and closed before the next starts.
        """
        benches, models, rows = prepared
        given = {**(engines or {}), **({models[0].label: engine} if engine is not None else {})}
        _sweep_temp_files(output_dir)
        results = {s.label: _evaluate_model(cfg, s, benches, rows, given.get(s.label)) for s in models}
        main, others = models[0], models[1:]
        report = {
            "model": main.ref,
            "label": main.label,
            "n": cfg.n,
            "benchmarks": results[main.label],
            "baselines": {s.label: {"model": s.ref, "benchmarks": results[s.label]} for s in others},
            "published_model": cfg.published_model,
            "cons_like_published": cfg.n == 64,
            "caveats": caveats(cfg),
            "environment": environment(cfg),
        }
        atomic_write_text(output_dir / "report.json", json.dumps(report, indent=2) + "\n")
        atomic_write_text(output_dir / "report.md", report_markdown(report))
        counts = {name: {"problems": m["problems"], "samples": m["samples"]} for name, m in results[main.label].items()}
        return {"model": main.ref, "counts": counts, "report": report}

    def summary(self, manifest: dict[str, Any]) -> str:
        """One part per benchmark and model, for a person to read at the end of a run."""
        report = manifest.get("report", {})
        parts = []
        for name, label, m in table_rows(report) if report else []:
            lo, hi = m["pass@1_ci95"]
            cons = "".join(f", {k} {100 * v:.1f}" for k, v in m.items() if k.startswith("cons@"))
            parts.append(
                f"{name} ({label}): pass@1 {100 * m['pass@1']:.1f} (95% CI {100 * lo:.1f}-{100 * hi:.1f}){cons}, "
                f"truncated {100 * m['truncation_rate']:.1f}% over {m['problems']} problems x n={m['n']}"
            )
        return "; ".join(parts) or "no report"


def _evaluate_model(
    cfg: EvaluateConfig,
    subject: Subject,
    benches: list[benchmarks.Benchmark],
    rows: dict[str, list[dict[str, Any]]],
    engine: Engine | None,
) -> dict[str, Any]:
    """One model on every benchmark; returns {benchmark: metrics}. An engine it starts is closed before it returns."""
    _forget_retrained(subject)
    own = None
    results: dict[str, Any] = {}
    try:
        for bench in benches:
            bdir = subject.out / bench.name
            bdir.mkdir(parents=True, exist_ok=True)
            problems = bdir / "problems.jsonl"
            _write_problems(problems, rows[bench.name])
            gcfg = _generate_config(cfg, subject.ref, bench, problems)
            needed = _needs_samples(gcfg, bdir / "samples", len(rows[bench.name]))
            if engine is None and needed:
                engine = own = generate.start_engine(gcfg)
            gen = generate.run(gcfg, None, bdir / "samples", engine=engine)
            m = _score_benchmark(cfg, bench, bdir, {r["id"] for r in rows[bench.name]})
            m["published"] = benchmarks.published_for(bench, subject.published_as)
            m["published_cons"] = benchmarks.published_for(bench, subject.published_as, cons=True)
            m["last_run_samples"] = gen.get("last_run", {}).get("samples", 0) if needed else 0
            if bench.note:
                m["note"] = bench.note
            results[bench.name] = m
            log.info("evaluate: %s %s pass@1 %.3f (%d problems)", subject.label, bench.name, m["pass@1"], m["problems"])
    finally:
        if own is not None:
            own.close()
    return results


def _score_benchmark(cfg: EvaluateConfig, bench: benchmarks.Benchmark, bdir: Path, wanted: set[str]) -> dict[str, Any]:
    """Grade the wanted samples on disk into scored.jsonl and return the benchmark's metrics.

    Only what this config asks for is scored: a folder reused with a smaller limit or n keeps its other samples."""
    records = sorted(
        (r for r in iter_records(bdir / "samples") if r["row"] in wanted and r["k"] < cfg.n),
        key=lambda r: (r["row"], r["k"]),
    )
    with Grader(math_timeout_s=cfg.math_timeout_s, workers=cfg.workers, lenient_think=cfg.lenient_think) as grader:
        scored = score(records, grader)
        equal = None
        if bench.domain in MATH_DOMAINS and cfg.n > 1:
            by_row: dict[str, list[str | None]] = defaultdict(list)
            for rec in scored:
                by_row[rec["row"]].append(rec["grade"].get("extracted"))
            equal = pool_equivalence(grader.math, by_row.values())
        write_jsonl_atomic(bdir / "scored.jsonl", scored)
        return bench_metrics(scored, bench.domain, cfg.n, cfg.ks, equal)


def _needs_samples(gcfg: generate.GenerateConfig, samples_dir: Path, problems: int) -> bool:
    """False when the samples folder holds a finished generate run of all wanted samples by this very model and
    sampling (wherever its problems file was): then no engine is started. Only a saving: generate itself draws
    whatever is missing."""
    m = read_manifest(samples_dir)
    return not (
        m
        and m.get("content_hash") == generate.content_hash(gcfg, generate.teacher_model(gcfg))
        and m["counts"] == {"prompts": problems, "n": gcfg.n, "samples": problems * gcfg.n}
    )


def _benchmark_list(text: str) -> str:
    """`--benchmarks a,b` as the YAML list override `[a, b]`."""
    return "[" + ", ".join(s.strip() for s in text.split(",") if s.strip()) + "]"


STAGE = EvaluateStage()
run, main, summary = STAGE.run, STAGE.main, STAGE.summary


if __name__ == "__main__":
    sys.exit(main())
