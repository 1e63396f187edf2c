"""build: kept samples -> a chat-format SFT dataset (parquet shards + dataset card) that TRL trains on.

    r1distill build -c pipelines/quickstart.yaml          (the recipe's `build:` section; input RUN_DIR/filter)

Each kept sample becomes one row whose `messages` are the prompt turns the teacher saw (plus `system_prompt` when
set) and an assistant turn `<think>\\n{reasoning}\\n</think>\\n\\n{answer}`, split by the one completion parser.
Several filter folders can be mixed by weight (`mix:`); train/validation are split by prompt text, so a prompt never
sits on both sides. Every row is rendered through the student's chat template: a template that drops or rewrites the
`<think>` block is an error here, not a silent loss at training time. Lengths are counted in the student's tokens.
A sample whose `<think>` never closed has no training target: it is skipped and counted in the manifest.

Columns: id, source, domain, problem, reference (JSON text unless already a string), messages, meta (the sample's
meta as JSON text), prompt + completion (with `prompt_completion: true`), num_tokens, completion_tokens.

Output: `data/{split}-NNNNN-of-NNNNN.parquet` (each written to a temp file and renamed), `README.md` (the card),
and `manifest.json` last. `datasets.load_dataset(OUTPUT)` reads it.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from r1distill.build.card import length_stats, render_card
from r1distill.build.parquet import SplitWriter, content_hash, schema
from r1distill.build.sources import Source, load_sources, mix_counts, picked_rows, problem_hash, split_groups, take
from r1distill.core import models
from r1distill.core.models import BUNDLED
from r1distill.core.progress import Progress
from r1distill.core.records import Sample
from r1distill.core.stage import Stage, header
from r1distill.core.store import (
    StageError,
    atomic_write_text,
)

log = logging.getLogger(__name__)

REQUIRED_FIELDS = ("id", "problem", "messages", "completion")
SPLITS = ("train", "validation")
TOKENIZE_BATCH = 1024
T = TypeVar("T")


@dataclass
class MixSource:
    """Another finished filter folder mixed into the dataset; `weight` is its share relative to the others."""

    path: str
    weight: float = 1.0
    name: str | None = None


@dataclass
class BuildConfig:
    """The recipe's `build:` section.

    `tokenizer` is the student's (a model folder, a Hub id, or `bundled:smollm2`). `weight` is the input folder's
    share when `mix` adds other folders. `total` fixes the row count after mixing (samples repeat if a source is too
    small); by default it is the largest count the weights allow without repeating a sample.
    """

    HASH_EXCLUDE = ("rows_per_shard",)

    tokenizer: str = BUNDLED
    system_prompt: str | None = None
    validation_fraction: float = 0.05
    seed: int = 0
    prompt_completion: bool = False
    weight: float = 1.0
    mix: list[MixSource] = field(default_factory=list)
    total: int | None = None
    license: str = "apache-2.0"
    pretty_name: str | None = None
    language: list[str] = field(default_factory=lambda: ["en"])
    rows_per_shard: int = 50_000


Config = BuildConfig


def assistant_content(reasoning: str, answer: str) -> str:
    """The assistant turn SFT trains on: R1's `<think>` block, a blank line, the final answer."""
    return f"<think>\n{reasoning}\n</think>\n\n{answer}"


def load_tokenizer(name: str):
    """The student's tokenizer; a path that does not exist or does not load names `build.tokenizer`."""
    tok = models.load_tokenizer(name, "build.tokenizer")
    if not tok.chat_template:
        raise StageError(
            f"build.tokenizer {name!r}: has no chat template; SFT on `messages` needs one (use the instruct "
            "tokenizer or add a chat_template to its tokenizer_config.json)"
        )
    return tok


def to_row(sample: Sample, system_prompt: str | None, with_prompt_completion: bool) -> dict[str, Any]:
    prompt = [{"role": m["role"], "content": m["content"]} for m in sample.messages]
    if system_prompt and prompt[0]["role"] != "system":
        prompt.insert(0, {"role": "system", "content": system_prompt})
    answer = {"role": "assistant", "content": assistant_content(sample.reasoning, sample.answer)}
    ref = sample.reference
    row = {
        "id": sample.id,
        "source": sample.source,
        "domain": sample.domain,
        "problem": sample.problem,
        "reference": ref if isinstance(ref, str) or ref is None else json.dumps(ref, ensure_ascii=False),
        "messages": [*prompt, answer],
        "meta": json.dumps(sample.meta, ensure_ascii=False, sort_keys=True),
    }
    if with_prompt_completion:
        row["prompt"], row["completion"] = prompt, [answer]
    return row


def count_tokens(tok, rows: list[dict[str, Any]], tokenizer_name: str) -> None:
    """Render each row through the chat template, check its `<think>` block survives, and add token counts."""
    texts = [_render(tok, row, tokenizer_name) for row in rows]
    completions = [row["messages"][-1]["content"] for row in rows]
    full = tok(texts, add_special_tokens=False)["input_ids"] if rows else []
    completion = tok(completions, add_special_tokens=False)["input_ids"] if rows else []
    for row, a, b in zip(rows, full, completion, strict=True):
        row["num_tokens"], row["completion_tokens"] = len(a), len(b)


def _render(tok, row: dict[str, Any], tokenizer_name: str) -> str:
    try:
        text = tok.apply_chat_template(row["messages"], tokenize=False)
    except Exception as e:  # jinja raises its own error types, e.g. for a role the template rejects
        raise StageError(f"build.tokenizer {tokenizer_name!r}: chat template fails on {row['id']}: {e}") from None
    if row["messages"][-1]["content"] not in text:
        raise StageError(
            f"build.tokenizer {tokenizer_name!r}: its chat template drops or rewrites the <think> block of the "
            f"assistant turn (sample {row['id']}); the student would not train on the reasoning. Use a template "
            "that keeps the last assistant turn verbatim"
        )
    return text


class BuildStage(Stage):
    name, Config, upstream = "build", BuildConfig, "filter"

    def validate(self, cfg: BuildConfig) -> None:
        if not 0 <= cfg.validation_fraction < 1:
            raise StageError(f"build.validation_fraction: must be in [0, 1), got {cfg.validation_fraction}")
        if cfg.rows_per_shard < 1 or (cfg.total is not None and cfg.total < 1):
            raise StageError("build.rows_per_shard and build.total: must be at least 1")

    def describe(self, cfg: BuildConfig, inp, recipe) -> list[tuple[str, str]]:
        from r1distill.pipeline.describe import model_state

        return [("tokenizer", model_state(cfg.tokenizer, recipe.run_dir)), ("resources", "CPU")]

    def prepare(self, cfg: BuildConfig, input_dir: Path, output_dir: Path, **kw: Any) -> Plan:
        """Index the sources, decide the mix and the split (the rows themselves are read in `work`)."""
        sources = load_sources(cfg, input_dir)
        tok = load_tokenizer(cfg.tokenizer)
        counts = mix_counts([len(s.refs) for s in sources], [s.weight for s in sources], cfg.total)
        picks = [
            take(src.refs, count, cfg.seed + i) for i, (src, count) in enumerate(zip(sources, counts, strict=True))
        ]
        val_keys = split_groups([key for picked in picks for _, _, key in picked], cfg.validation_fraction, cfg.seed)
        n_val = sum(key in val_keys for picked in picks for _, _, key in picked)
        return Plan(sources, tok, counts, picks, val_keys, {"train": sum(counts) - n_val, "validation": n_val})

    def work(self, cfg: BuildConfig, input_dir: Path, output_dir: Path, plan: Plan, **kw) -> dict[str, Any]:
        """Stream the picked samples through the chat template into the parquet shards, one batch at a time."""
        sources, counts, columns = plan.sources, plan.counts, schema(cfg.prompt_completion)
        # Shards of an earlier build, and temp files of a killed one, must not mix into this dataset.
        for old in [*(output_dir / "data").glob("*.parquet"), *(output_dir / "data").glob(".*.tmp")]:
            old.unlink()
        for old in output_dir.glob(".*.tmp"):
            old.unlink()
        writers = {name: SplitWriter(output_dir, name, n, cfg.rows_per_shard, columns)
                   for name, n in plan.sizes.items() if n}  # fmt: skip
        progress = Progress(total=sum(counts), desc="build")
        try:
            batch: list[dict[str, Any]] = []
            for src, picked in zip(sources, plan.picks, strict=True):
                for sample in picked_rows(src, picked):
                    row = to_row(sample, cfg.system_prompt, cfg.prompt_completion)
                    batch.append(row)
                    if len(batch) >= TOKENIZE_BATCH:
                        _flush(plan.tok, cfg, batch, writers, plan.val_keys, progress)
                        batch = []
            _flush(plan.tok, cfg, batch, writers, plan.val_keys, progress)
            for writer in writers.values():
                writer.close()
        except BaseException:
            for writer in writers.values():
                writer.abort()
            raise
        finally:
            progress.close()
        manifest = {
            "content_hash": content_hash(writers.values()),
            "tokenizer": cfg.tokenizer,
            "counts": {name: len(w.num_tokens) for name, w in writers.items()},
            "prompts": {name: len(w.prompts) for name, w in writers.items()},
            "sources": [
                {
                    "name": s.name,
                    "path": str(s.path),
                    "weight": s.weight,
                    "available": len(s.refs),
                    "skipped_unclosed_think": s.unclosed,
                    "rows": n,
                    "manifest_hash": s.manifest_hash,
                }
                for s, n in zip(sources, counts, strict=True)
            ],  # fmt: skip
            "lengths": {name: length_stats(w.num_tokens) for name, w in writers.items()},
            "completion_lengths": {name: length_stats(w.completion_tokens) for name, w in writers.items()},
            "domains": {name: dict(sorted(w.domains.items())) for name, w in writers.items()},
            "parquet_files": [f for w in writers.values() for f in w.files],
        }
        # The card shows the manifest's own header fields too (version, created).
        card_manifest = {**header("build", cfg, input_dir), **manifest}
        atomic_write_text(output_dir / "README.md", render_card(cfg, card_manifest, sources))
        return manifest

    def summary(self, manifest: dict[str, Any]) -> str:
        """One line a person reads at the end of a run."""
        counts = ", ".join(f"{name} {n} rows" for name, n in manifest["counts"].items())
        lengths = manifest["lengths"].get("train", {})
        return f"{counts}; train tokens mean {lengths.get('mean')} max {lengths.get('max')}; card README.md"


@dataclass
class Plan:
    """What `prepare` decided: the sources, the student's tokenizer, rows per source, the picks and the split."""

    sources: list[Source]
    tok: Any
    counts: list[int]
    picks: list[list[tuple[int, int, str]]]
    val_keys: set[str]
    sizes: dict[str, int]


def _flush(tok, cfg: BuildConfig, batch: list[dict[str, Any]], writers: dict, val_keys: set[str], progress) -> None:
    count_tokens(tok, batch, cfg.tokenizer)
    by_split: dict[str, list[dict[str, Any]]] = {}
    for row in batch:
        by_split.setdefault("validation" if problem_hash(row["problem"]) in val_keys else "train", []).append(row)
    for name, rows in by_split.items():
        writers[name].write(rows)
    progress.update(len(batch), sum(r["num_tokens"] for r in batch))


STAGE = BuildStage()
run, main, summary = STAGE.run, STAGE.main, STAGE.summary


if __name__ == "__main__":
    sys.exit(main())
