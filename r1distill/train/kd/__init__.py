"""Soft-label distillation for the sft stage (issue 8): the recipe's `sft.kd:` section and the trainer it selects.

    sft:
      kd:
        source: offline        # offline: the top-k sidecars of `generate.logprobs: k`; online: a teacher model
        alpha: 0.5             # L = alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(labels)
        temperature: 1.0
        top_k: null            # offline: use the first k of the sidecar's (null = all); online: null = full vocab
        top_k_mode: tail       # tail (default: the missing mass is one bucket) | renormalize; see kd/loss.py
        teacher: null          # the teacher (online: the model; offline: its tokenizer, for the vocabulary check);
                               # default: the model generate recorded in the samples' meta
        logprobs_dir: null     # the generate folder holding the sidecars; default RUN_DIR/generate
        min_aligned: 0.5       # fail if fewer label tokens than this get teacher data (offline): a wrong
                               # folder or tokenizer gives ~0; the never-sampled prefill is the usual gap
        hidden: null           # hidden-state matching: {weight, loss: cosine|mse, layers, projection}; kd/hidden.py

R1's distilled models were trained on the sampled text alone (hard labels); this adds the teacher's distribution at
every token. Token-level KD needs teacher and student to share a vocabulary: a different tokenizer is an error.
`top_k_mode: tail` is the default because it is the exact KL of the distributions coarsened to k + 1 outcomes and
keeps the student's mass outside the teacher's top-k where the teacher has it (kd/loss.py says more). The sidecars
hold the teacher's raw distribution (vLLM's default `logprobs_mode`, before sampling temperature and top-p), which
is what `temperature` rescales. Offline costs 8 + 6k bytes of sidecar per token (128 B at k = 20); online costs a
teacher forward per step and the teacher's memory on every rank (meant for small teachers).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1distill.core.config import ConfigError, from_dict
from r1distill.train.kd import hidden as hidden_states
from r1distill.train.kd.loss import MODES, TAIL

log = logging.getLogger(__name__)

SOURCES = ("offline", "online")


@dataclass
class KDConfig:
    """The recipe's `sft.kd:` section (see the module docstring)."""

    source: str = "offline"
    alpha: float = 0.5
    temperature: float = 1.0
    top_k: int | None = None
    top_k_mode: str = TAIL
    teacher: str | None = None
    logprobs_dir: str | None = None
    min_aligned: float = 0.5
    hidden: dict[str, Any] | None = None


@dataclass
class KD:
    """What KDTrainer needs: the settings, one teacher source, and for hidden-state matching its settings and the
    teacher model whose states are matched (the online teacher itself, or one loaded beside the sidecars)."""

    config: KDConfig
    offline: Any = None
    online: Any = None
    hidden: Any = None
    hidden_teacher: Any = None


def parse(raw: dict[str, Any] | KDConfig, where: str) -> KDConfig:
    cfg = raw if isinstance(raw, KDConfig) else from_dict(KDConfig, raw or {}, where)
    checks = [
        ("source", cfg.source in SOURCES, f"one of {', '.join(SOURCES)}"),
        ("alpha", 0 <= cfg.alpha <= 1, "a weight in [0, 1]"),
        ("temperature", cfg.temperature > 0, "> 0"),
        ("top_k", cfg.top_k is None or cfg.top_k >= 1, "null or >= 1"),
        ("top_k_mode", cfg.top_k_mode in MODES, f"one of {', '.join(MODES)}"),
        ("min_aligned", 0 <= cfg.min_aligned <= 1, "a fraction in [0, 1]"),
    ]
    for key, ok, what in checks:
        if not ok:
            raise ConfigError(f"{where}.{key}: must be {what}, got {getattr(cfg, key)!r}")
    hidden_states.parse(cfg.hidden, f"{where}.hidden")
    return cfg


def recorded_teacher(rows, generate_dir: Path | None) -> str | None:
    """The teacher model generate recorded in the samples' meta: in the rows, else in the generate folder."""
    meta = None
    if rows is not None and len(rows) and "meta" in rows.column_names:
        meta = rows[0]["meta"]
    elif generate_dir is not None and generate_dir.is_dir():
        from r1distill.core.store import iter_records

        meta = next((r.get("meta") for r in iter_records(generate_dir)), None)
    meta = json.loads(meta) if isinstance(meta, str) else meta or {}
    return (meta.get("teacher") or {}).get("model")


def generate_dir(cfg: KDConfig, input_dir, where: str) -> Path | None:
    """`logprobs_dir`, else the run's generate folder beside `input_dir` (RUN_DIR/build)."""
    if cfg.logprobs_dir:
        return Path(cfg.logprobs_dir)
    if input_dir is not None:
        return Path(input_dir).parent / "generate"
    if cfg.source == "offline":
        raise ConfigError(f"{where}.logprobs_dir: not set and there is no run folder; name the generate folder")
    return None


def check_vocabulary(teacher_tok, student_tok, teacher_name: str, where: str) -> None:
    """Every teacher token must be the same id in the student's vocabulary (the student may add tokens)."""
    student = student_tok.get_vocab()
    teacher = teacher_tok.get_vocab()
    bad = [t for t, i in teacher.items() if student.get(t) != i]
    if bad:
        raise ConfigError(
            f"{where}.teacher: {teacher_name!r} has a different vocabulary from the student's ({len(bad)} of "
            f"{len(teacher)} teacher tokens differ, e.g. {bad[0]!r}); token-level distillation needs one tokenizer: "
            "pick a student of the teacher's family or remove the kd section"
        )


def setup(raw, where: str, tokenizer, student, input_dir, train, eval, args):
    """(trainer class, train dataset, eval dataset, extra trainer kwargs) for `sft` with a `kd:` section.

    Offline, the datasets come back tokenized (TRL then skips its own tokenization) and aligned to the sidecars.
    """
    from r1distill.core import models
    from r1distill.train.kd import teacher as teachers
    from r1distill.train.kd.trainer import KDTrainer

    cfg = parse(raw, where)
    lp_dir = generate_dir(cfg, input_dir, where)
    if cfg.source == "offline" and not lp_dir.is_dir():
        raise ConfigError(f"{where}.logprobs_dir: {lp_dir} is not a folder; point it at the generate output")
    name = cfg.teacher or recorded_teacher(train, lp_dir)
    if not name:
        raise ConfigError(f"{where}.teacher: not set and the samples record no teacher model; name the teacher")
    check_vocabulary(models.load_tokenizer(name, f"{where}.teacher"), tokenizer, name, where)
    hidden = hidden_states.parse(cfg.hidden, f"{where}.hidden")
    teacher_model = teachers.load_model(name, where) if cfg.source == "online" or hidden else None
    if hidden:  # before any tokenization: a bad layer map fails in a second
        from transformers import AutoConfig

        hidden_states.check(hidden, AutoConfig.from_pretrained(student), teacher_model.config, f"{where}.hidden")
    if cfg.source == "online":
        model = teacher_model
        log.info("kd: online teacher %s, alpha %.2f, T %.2f, %s", name, cfg.alpha, cfg.temperature,
                 f"top-{cfg.top_k} ({cfg.top_k_mode})" if cfg.top_k else "full vocabulary")  # fmt: skip
        online = teachers.OnlineTeacher(model, cfg.top_k)
        return KDTrainer, train, eval, {"kd": KD(cfg, online=online, hidden=hidden, hidden_teacher=online)}

    if args.packing and args.packing_strategy == "wrapped":
        raise ConfigError(f"{where}: packing_strategy 'wrapped' cuts sequences anywhere; use bfd or bfd_split")
    store = teachers.OfflineTeacher(lp_dir, tokenizer, cfg.top_k, args.max_length)
    train = teachers.tokenize_like_trl(train, tokenizer, args, "train")
    store.add(train)
    if eval is not None:
        eval = teachers.tokenize_like_trl(eval, tokenizer, args, "eval")
        store.add(eval)
    if store.k == 0:
        raise ConfigError(
            f"{where}: no sample in {lp_dir} has logprobs; generate with `generate.logprobs: 20` (or use online)"
        )
    log.info("kd: offline teacher %s (%s, k=%d), %d rows, %.1f%% of label tokens aligned, %d rows without logprobs",
             name, lp_dir, store.k, len(store.rows), 100 * store.aligned_fraction, store.no_logprobs)  # fmt: skip
    if store.aligned_fraction < cfg.min_aligned:
        raise ConfigError(
            f"{where}.min_aligned: only {store.aligned_fraction:.1%} of the assistant tokens align to teacher "
            f"logprobs (below {cfg.min_aligned:.0%}); check that {lp_dir} is the generate run these rows came from"
        )
    # Sidecars hold distributions, not states: hidden-state matching runs the teacher model beside them.
    states = teachers.OnlineTeacher(teacher_model, None) if hidden else None
    return KDTrainer, train, eval, {"kd": KD(cfg, offline=store, hidden=hidden, hidden_teacher=states)}
