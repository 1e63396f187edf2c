"""One model on every benchmark: the problems written, the samples drawn through generate (a killed run resumes;
no engine starts when every sample is on disk), each sample graded and the benchmark's metrics computed."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from r1distill.core.store import atomic_write_text, read_manifest
from r1distill.evaluate import benchmarks, scoring
from r1distill.evaluate.subjects import Subject, forget_retrained
from r1distill.generate import stage as generate
from r1distill.generate.engines import Engine
from r1distill.generate.prompts import SourceConfig
from r1distill.grading.grader import Grader

log = logging.getLogger("r1distill.evaluate.stage")


def generate_config(cfg: Any, model: str, bench: benchmarks.Benchmark, problems: Path) -> generate.GenerateConfig:
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


def write_problems(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write the rows only when they changed, so a resumed run leaves the file (and its mtime) alone."""
    text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)
    if not path.exists() or path.read_text(encoding="utf-8") != text:
        atomic_write_text(path, text)


def evaluate_model(
    cfg: Any,
    subject: Subject,
    benches: list[benchmarks.Benchmark],
    rows: dict[str, list[dict[str, Any]]],
    engine: Engine | None,
) -> tuple[dict[str, Any], dict[str, dict[str, float]], bool]:
    """One model on every benchmark; returns ({benchmark: metrics}, {benchmark: {problem: pass rate}}, whether every
    sample was drawn with its seed). An engine it starts is closed before it returns."""
    forget_retrained(subject)
    own = None
    results: dict[str, Any] = {}
    outcomes: dict[str, dict[str, float]] = {}
    seeded = True
    try:
        for bench in benches:
            bdir = subject.out / bench.name
            bdir.mkdir(parents=True, exist_ok=True)
            problems = bdir / "problems.jsonl"
            write_problems(problems, rows[bench.name])
            gcfg = generate_config(cfg, subject.ref, bench, problems)
            needed = needs_samples(gcfg, bdir / "samples", len(rows[bench.name]))
            if engine is None and needed:
                engine = own = generate.start_engine(gcfg)
            gen = generate.run(gcfg, None, bdir / "samples", engine=engine)
            wanted = {r["id"] for r in rows[bench.name]}
            with Grader(
                math_timeout_s=cfg.math_timeout_s,
                workers=cfg.workers,
                lenient_think=cfg.lenient_think,
                isolation=cfg.code_isolation,
            ) as grader:
                m, outcomes[bench.name], bench_seeded = scoring.score_benchmark(
                    bdir / "samples", bdir / "scored.jsonl", bench.domain, wanted, cfg.n, cfg.ks, grader, cfg.judge
                )
            seeded = seeded and bench_seeded
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
    return results, outcomes, seeded


def needs_samples(gcfg: generate.GenerateConfig, samples_dir: Path, problems: int) -> bool:
    """False when the samples folder holds a finished generate run of all wanted samples by this very model and
    sampling (wherever its problems file was): then no engine is started. Only a saving: generate itself draws
    whatever is missing."""
    m = read_manifest(samples_dir)
    return not (
        m
        and m.get("content_hash") == generate.content_hash(gcfg, generate.teacher_model(gcfg))
        and m["counts"] == {"prompts": problems, "n": gcfg.n, "samples": problems * gcfg.n}
    )
