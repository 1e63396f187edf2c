"""Prompt selection by pass rate: sample the student k times per prompt, grade, keep the middle difficulty window.

GRPO learns only from prompts whose k rollouts disagree: a prompt the student always solves (or never does) gives
every completion the same reward, so zero advantage. As open-r1 does for its RL data, the student's pass rate is
measured first and only prompts with `low <= pass rate <= high` are trained on.

Sampling is a generate run (the same engines, resume and per-sample seeds) into OUTPUT/selection/, graded by the
same `Grader` as verify; the result, one line per prompt with its pass rate, is OUTPUT/selection.jsonl. A rerun
with the same settings and model reuses that file without starting an engine.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from r1distill.core.config import config_hash
from r1distill.core.records import prompt_key
from r1distill.core.store import StageError, atomic_write_text, iter_records, manifest_hash, read_jsonl
from r1distill.generate import stage as generate
from r1distill.generate.engines import Engine
from r1distill.generate.engines.openai_http import HTTPSettings
from r1distill.generate.prompts import Prompt

log = logging.getLogger(__name__)

FILE = "selection.jsonl"
SAMPLES = "selection"


@dataclass
class SelectionConfig:
    """The `rl.selection:` section. `sampling` goes to vLLM's SamplingParams (merged over R1's; set max_tokens to the
    RL completion length), `vllm` to `vllm.LLM`. `engine`: vllm (in-process) or openai (an endpoint serving the
    student, with `http`)."""

    k: int = 8
    low: float = 0.2
    high: float = 0.8
    sampling: dict[str, Any] = field(default_factory=dict)
    vllm: dict[str, Any] = field(default_factory=dict)
    engine: str = "vllm"
    http: HTTPSettings | None = None
    seed: int | None = 0

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"selection.k must be at least 1, got {self.k}")
        if not 0.0 <= self.low <= self.high <= 1.0:
            raise ValueError(f"selection: need 0 <= low <= high <= 1, got low={self.low}, high={self.high}")


def pass_rates(verdicts: Iterable[tuple[str, bool]]) -> dict[str, tuple[int, int]]:
    """(passed, sampled) per prompt key from (prompt key, correct) pairs.

    >>> pass_rates([("a/0", True), ("a/0", False), ("b/1", False)])
    {'a/0': (1, 2), 'b/1': (0, 1)}
    """
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for key, correct in verdicts:
        counts[key][0] += int(correct)
        counts[key][1] += 1
    return {key: (p, n) for key, (p, n) in counts.items()}


def select(rates: dict[str, tuple[int, int]], low: float, high: float) -> list[dict[str, Any]]:
    """One row per prompt (sorted by key): its counts, pass rate and whether it is in the window [low, high].

    >>> [(r["id"], r["pass_rate"], r["kept"]) for r in select({"a": (1, 4), "b": (4, 4), "c": (0, 4)}, 0.2, 0.8)]
    [('a', 0.25, True), ('b', 1.0, False), ('c', 0.0, False)]
    """
    rows = []
    for key in sorted(rates):
        passed, sampled = rates[key]
        rate = passed / sampled if sampled else 0.0
        rows.append({"id": key, "passed": passed, "sampled": sampled, "pass_rate": rate, "kept": low <= rate <= high})
    return rows


def selection_hash(sel: SelectionConfig, gen: generate.GenerateConfig, model: str, grading: dict[str, Any]) -> str:
    """What decides the selection: its settings, the prompts, how they are rendered, the model (and, for a folder,
    its manifest, so a retrained student is measured again) and the grading."""
    prompts = {k: getattr(gen, k) for k in ("sources", "limit", "system_prompt", "prompt_template", "prefill")}
    return config_hash(
        {"selection": asdict(sel), "prompts": prompts, "model": model, "model_manifest": _model_hash(model), **grading}
    )


def _model_hash(model: str) -> str | None:
    return manifest_hash(model) if Path(model).is_dir() else None


def read(output_dir: Path, key: str) -> list[dict[str, Any]] | None:
    """The saved selection when it was made with the settings hashed as `key`, else None."""
    path = Path(output_dir) / FILE
    if not path.exists():
        return None
    rows = [row for _, row in read_jsonl(path, skip_blank=True)]
    return rows if rows and all(r.get("selection_hash") == key for r in rows) else None


def run(
    sel: SelectionConfig,
    gen: generate.GenerateConfig,
    model: str,
    prompts: Sequence[Prompt],
    output_dir: Path,
    grader: Any,
    grading: dict[str, Any],
    engine: Engine | None = None,
) -> list[dict[str, Any]]:
    """Sample `sel.k` answers per prompt with `model`, grade them with `grader`, write OUTPUT/selection.jsonl.

    `gen` carries the prompt rendering (sources, system prompt, template, prefill); `grading` the grader settings
    (for the reuse hash). Returns the rows (`select`'s) and reuses a saved selection made with the same settings.
    """
    output_dir = Path(output_dir)
    key = selection_hash(sel, gen, model, grading)
    saved = read(output_dir, key)
    if saved is not None:
        log.info("selection: reusing %s (%d prompts kept)", output_dir / FILE, sum(r["kept"] for r in saved))
        return saved
    gcfg = replace(
        gen,
        model=model,
        engine=sel.engine,
        n=sel.k,
        sampling=dict(sel.sampling),
        vllm=dict(sel.vllm),
        http=sel.http,
        seed=sel.seed,
    )
    generate.run(gcfg, None, output_dir / SAMPLES, engine=engine)
    wanted = {prompt_key(p.source, p.row) for p in prompts}
    records = [
        r for r in iter_records(output_dir / SAMPLES) if prompt_key(r["source"], r["row"]) in wanted and r["k"] < sel.k
    ]
    grades = grader.grade(records)
    rates = pass_rates((prompt_key(r["source"], r["row"]), g.correct) for r, g in zip(records, grades, strict=True))
    rows = [{**row, "selection_hash": key} for row in select(rates, sel.low, sel.high)]
    atomic_write_text(output_dir / FILE, "".join(json.dumps(r) + "\n" for r in rows))
    kept = sum(r["kept"] for r in rows)
    log.info(
        "selection: %d of %d prompts have a pass rate in [%.2f, %.2f] over k=%d samples -> %s",
        kept, len(rows), sel.low, sel.high, sel.k, output_dir / FILE,
    )  # fmt: skip
    return rows


def kept_prompts(prompts: Sequence[Prompt], rows: Sequence[dict[str, Any]]) -> list[Prompt]:
    """The prompts the selection kept, in their original order; an empty selection is an error."""
    keep = {r["id"] for r in rows if r["kept"]}
    out = [p for p in prompts if prompt_key(p.source, p.row) in keep]
    if not out:
        rates = sorted(r["pass_rate"] for r in rows)
        raise StageError(
            f"rl.selection: no prompt has a pass rate in the window (rates from {rates[0]:.2f} to {rates[-1]:.2f}); "
            "widen rl.selection.low/high or choose harder/easier prompts"
            if rates
            else "rl.selection: no prompt was sampled"
        )
    return out


def summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Counts for the rl manifest: prompts measured, kept, and how many were always / never solved."""
    return {
        "measured": len(rows),
        "kept": sum(r["kept"] for r in rows),
        "always_solved": sum(r["pass_rate"] == 1.0 for r in rows),
        "never_solved": sum(r["pass_rate"] == 0.0 for r in rows),
        "mean_pass_rate": round(sum(r["pass_rate"] for r in rows) / max(len(rows), 1), 4),
    }
