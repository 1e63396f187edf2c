"""The models evaluate scores: the evaluated one (the run's student unless `evaluate.model` names one) and the
baselines beside it, each checked before any engine starts, each with its own folder in OUTPUT and a key that says
which model it is once resolved, so one model under two labels is sampled and scored once."""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1distill.core.store import MANIFEST, StageError, atomic_write_text, manifest_hash
from r1distill.evaluate import benchmarks

log = logging.getLogger(__name__)

_LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
STAMP = "model.json"  # in each model's folder: which model (and which training of it) its samples come from


def stage_folder(ref: str) -> bool:
    path = Path(ref).expanduser()
    return path.is_dir() and (path / MANIFEST).exists()


@dataclass(frozen=True)
class Subject:
    """One model under evaluation: its label in the report, its reference, its folder in OUTPUT."""

    label: str
    ref: str
    out: Path
    published_as: str
    key: str = ""  # the model after resolution: subjects with the same key are sampled and scored once


def model_key(ref: str, engine: str) -> str:
    """What a model reference names once resolved (bundled:NAME -> its folder, a folder -> its real path), so two
    labels for one model share one evaluation. A served name (`openai`) or Hub id is its own key."""
    from r1distill.core.models import BUNDLED, default_teacher

    if engine == "openai":
        return f"served:{ref}"
    if ref in (BUNDLED, "bundled", "default"):
        return str(default_teacher().resolve())
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.exists() else ref


def check_model_folder(ref: str, where: str) -> None:
    """Refuse a training output (sft/rl) that has no manifest.json: its weights belong to an unfinished run."""
    path = Path(ref).expanduser()
    if path.is_dir() and not (path / MANIFEST).exists():
        if (path / "checkpoints").is_dir() or (path / "trainer_state.json").exists():
            raise StageError(
                f"{where}: {path} is an unfinished training run (checkpoints but no {MANIFEST}); rerun its "
                "sft/rl command to finish it (it resumes), or point at a finished model"
            )


def subjects(cfg: Any, input_dir: Path | None, output_dir: Path) -> list[Subject]:
    """The evaluated model first (the student unless `model` is set), then the baselines; all checked before any
    engine starts."""
    if cfg.model:
        check_model_folder(cfg.model, "evaluate.model")
        key = model_key(cfg.model, cfg.engine)
        models = [Subject("model", cfg.model, output_dir, cfg.published_model or cfg.model, key)]
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
        key = model_key(str(student), cfg.engine)
        models = [Subject("student", str(student), output_dir, cfg.published_model or str(student), key)]
    for label, ref in cfg.baselines.items():
        where = f"evaluate.baselines.{label}"
        if not _LABEL.match(str(label)):
            raise StageError(f"{where}: a label names a folder: letters, digits, '.', '_' or '-' only")
        if not isinstance(ref, str) or not ref:
            raise StageError(f"{where}: give a model (a folder, Hub id or bundled:smollm2)")
        check_model_folder(ref, where)
        models.append(Subject(str(label), ref, output_dir / "baselines" / str(label), ref, model_key(ref, cfg.engine)))
    if cfg.published_model and Path(cfg.published_model).name.lower() not in {
        m.lower() for m in benchmarks.PUBLISHED_MODELS
    }:
        raise StageError(
            f"evaluate.published_model: {cfg.published_model!r} has no published numbers; one of "
            + ", ".join(benchmarks.PUBLISHED_MODELS)
        )
    return models


def forget_retrained(subject: Subject) -> None:
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
