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
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r1distill.core.stage import Flag, Stage
from r1distill.core.store import StageError, atomic_write_text, manifest_hash
from r1distill.evaluate import benchmarks, scoring
from r1distill.evaluate.metrics import PAIRED_METHODS
from r1distill.evaluate.report import caveats, environment, model_record, report_markdown, table_rows
from r1distill.evaluate.sampling import evaluate_model
from r1distill.evaluate.scoring import bench_metrics, pool_equivalence, score  # noqa: F401 (the stage's API)
from r1distill.evaluate.subjects import stage_folder, subjects
from r1distill.generate import stage as generate
from r1distill.generate.engines import Engine
from r1distill.generate.engines.openai_http import HTTPSettings
from r1distill.grading.judge import JudgeConfig
from r1distill.grading.sandbox import LEVELS, require_level

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
    `judge`: the LLM judge fallback for answers the rules cannot decide (see `grading.judge`; off by default): its
    verdicts count in pass@1 and are reported apart (`judged`, `pass@1_rules`).
    `code_isolation`: the sandbox level for code benchmarks (None: bubblewrap, refused where it is unusable; name
    `uid` or `rlimit` to accept a weaker one). `paired_method`: how the Δ pass@1 of the model against each baseline
    gets its CI and p-value (`bootstrap`: paired bootstrap + sign-flip test, seeded; `t`: paired t).
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
    code_isolation: str | None = None
    paired_method: str = "bootstrap"
    judge: JudgeConfig = field(default_factory=JudgeConfig)  # as verify.judge; judged verdicts are counted apart

    def hash_extra(self) -> dict[str, str | None]:
        """The manifest hash of each named model folder that is a finished stage: retraining it re-evaluates it."""
        refs = [self.model, *self.baselines.values()]
        return {r: manifest_hash(Path(r).expanduser()) for r in refs if isinstance(r, str) and stage_folder(r)}


Config = EvaluateConfig


def upstream(recipe: Any) -> str | None:
    """The run-dir folder evaluate reads: the trained student (rl's output when the recipe has an rl stage, else
    distill's when it has distill, else sft's), or None when `evaluate.model` names the model."""
    section = recipe.data.get("evaluate") or {}
    if isinstance(section, dict) and section.get("model"):
        return None
    return next((s for s in ("rl", "distill") if s in recipe.data), "sft")


def _sweep_temp_files(root: Path) -> None:
    """Remove what atomic writes killed midway left behind (`.NAME.XXXX.tmp`); call only under the folder's lock.
    Unsealed shards (`part-*.jsonl.tmp`) are not touched: generate recovers their records."""
    for path in root.rglob(".*.tmp"):
        path.unlink(missing_ok=True)


def validate(cfg: EvaluateConfig) -> None:
    """Checks that need no model and no data (`r1distill run --dry-run`): engine, sampling, benchmark names."""
    generate.check_engine(cfg.engine, cfg.http, {**generate.R1_SAMPLING, **cfg.sampling}, "evaluate")
    for name in cfg.benchmarks:
        benchmarks.get(name)
    _check_options(cfg)


def _check_options(cfg: EvaluateConfig) -> None:
    if cfg.code_isolation is not None and cfg.code_isolation not in LEVELS:
        raise StageError(f"evaluate.code_isolation: {cfg.code_isolation!r} is not one of {', '.join(LEVELS)} (or null)")
    if cfg.paired_method not in PAIRED_METHODS:
        raise StageError(f"evaluate.paired_method: {cfg.paired_method!r} is not one of {', '.join(PAIRED_METHODS)}")
    if cfg.judge.enabled and not (cfg.judge.http and cfg.judge.http.base_urls):
        raise StageError("evaluate.judge.http.base_urls: the judge needs a server, e.g. [http://127.0.0.1:8000/v1]")


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
        baselines = [("baseline", f"{label}: {describe.model_state(ref, recipe.run_dir)}")
                     for label, ref in cfg.baselines.items()]  # fmt: skip
        return [
            model,
            *baselines,
            ("benchmarks", f"{', '.join(cfg.benchmarks)} (n={cfg.n}, {describe.sampling_text(cfg.sampling)})"),
            describe.engine_line(cfg, recipe),
        ]

    def prepare(self, cfg: EvaluateConfig, input_dir: Path | None, output_dir: Path, **kw: Any) -> tuple:
        """Every benchmark and model checked before any engine starts; one row past the limit tells whether the
        limit cut a benchmark short."""
        benches = [benchmarks.get(name) for name in cfg.benchmarks]
        if any(b.domain == "code" for b in benches):
            require_level(cfg.code_isolation)  # before any engine starts: refused here, not after hours of sampling
        models = subjects(cfg, input_dir, output_dir)
        rows, subset = {}, {}
        for b in benches:
            got = b.rows(cfg.data_root, cfg.limit + 1 if cfg.limit is not None else None)
            rows[b.name], subset[b.name] = got[: cfg.limit], cfg.limit is not None and len(got) > cfg.limit
        return benches, models, rows, subset

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
        manifest's `report` is also report.json's content. The same model under two labels is sampled once.

        `engine` (the evaluated model's) and `engines` (by baseline label) let a caller share running engines; by
        default one is started per model, and closed before the next starts.
        """
        benches, models, rows, subset = prepared
        given = {**(engines or {}), **({models[0].label: engine} if engine is not None else {})}
        _sweep_temp_files(output_dir)
        results: dict[str, dict[str, Any]] = {}
        outcomes: dict[str, dict[str, dict[str, float]]] = {}
        seeded: dict[str, bool] = {}
        first: dict[str, str] = {}  # model key -> the label that evaluated it
        for s in models:
            if s.key in first:  # the same model under another label: shown under each, sampled once
                log.info("evaluate: %s is the same model as %s (%s): scored once", s.label, first[s.key], s.key)
                results[s.label], outcomes[s.label] = results[first[s.key]], outcomes[first[s.key]]
                continue
            first[s.key] = s.label
            results[s.label], outcomes[s.label], seeded[s.label] = evaluate_model(
                cfg, s, benches, rows, given.get(s.label)
            )
        main, others = models[0], models[1:]
        report = {
            "model": main.ref,
            "label": main.label,
            "n": cfg.n,
            "benchmarks": results[main.label],
            "baselines": {
                s.label: {
                    "model": s.ref,
                    "benchmarks": results[s.label],
                    **({"same_model_as": first[s.key]} if first[s.key] != s.label else {}),
                }
                for s in others
            },
            "paired": scoring.paired(main.label, outcomes, cfg.paired_method, cfg.seed or 0),
            "published_model": cfg.published_model,
            "cons_like_published": cfg.n == 64,
            "caveats": caveats(cfg, benches, subset),
            "environment": environment(
                cfg,
                models={s.label: model_record(s.ref, s.key, cfg.engine) for s in models},
                sources={b.name: {**b.source(cfg.data_root), "prompt_template": b.prompt_template} for b in benches},
                seeded=all(seeded.values()),
            ),
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


def _benchmark_list(text: str) -> str:
    """`--benchmarks a,b` as the YAML list override `[a, b]`."""
    return "[" + ", ".join(s.strip() for s in text.split(",") if s.strip()) + "]"


STAGE = EvaluateStage()
run, main, summary = STAGE.run, STAGE.main, STAGE.summary


if __name__ == "__main__":
    sys.exit(main())
