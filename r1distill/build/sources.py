"""The input side of build: kept-sample folders indexed without holding their texts, mixed by weight, split by
prompt text. An index entry is (shard, line, problem hash); the rows are read back only when written."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from r1distill.core.records import Sample
from r1distill.core.stage import check_input
from r1distill.core.store import StageError, manifest_hash, read_jsonl, shard_paths

REQUIRED_FIELDS = ("id", "problem", "messages", "completion")
T = TypeVar("T")


def read_samples(path: Path, folder: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) of one shard; a record missing a required field is an error naming file, line, field."""
    for lineno, data in read_jsonl(path):
        if not isinstance(data, dict):
            raise StageError(f"{path}:{lineno}: not a JSON object; build reads a finished filter folder")
        missing = [k for k in REQUIRED_FIELDS if k not in data]
        if missing:
            raise StageError(
                f"{path}:{lineno}: record has no field {missing[0]!r}; build reads Sample records "
                f"({', '.join(REQUIRED_FIELDS)}, ...) from a finished filter folder: run `r1distill filter`"
            )
        if not isinstance(data["messages"], list) or not any(
            isinstance(m, dict) and m.get("role") == "user" for m in data["messages"]
        ):
            raise StageError(f"{path}:{lineno}: field 'messages' needs a list with a user turn")
        for key, default in (("source", folder.name), ("row", data["id"]), ("k", 0), ("domain", "unknown")):
            data.setdefault(key, default)
        data.setdefault("reference", None)
        yield lineno, data


@dataclass
class Source:
    """One input folder of kept samples, indexed so that mixing and splitting never hold the texts in memory:
    `refs` = (shard, line, prompt key) per sample with a closed `<think>` block; the others are only counted
    (`unclosed`: no training target). `first_meta` is the first sample's meta, for the card."""

    name: str
    path: Path
    weight: float
    manifest: dict[str, Any]
    manifest_hash: str | None
    shards: list[Path]
    refs: list[tuple[int, int, str]]
    unclosed: int
    first_meta: dict[str, Any]


def index_source(folder: Path) -> tuple[list[Path], list[tuple[int, int, str]], int, dict[str, Any]]:
    """(shards, refs, unclosed, first_meta) of a folder (see `Source`)."""
    shards = shard_paths(folder)
    refs: list[tuple[int, int, str]] = []
    unclosed, first_meta = 0, None
    for i, path in enumerate(shards):
        for lineno, data in read_samples(path, folder):
            sample = Sample.from_dict(data)
            if not sample.parsed.closed:
                unclosed += 1
                continue
            first_meta = sample.meta if first_meta is None else first_meta
            refs.append((i, lineno, problem_hash(sample.problem)))
    return shards, refs, unclosed, first_meta or {}


def mix_counts(sizes: list[int], weights: list[float], total: int | None) -> list[int]:
    """Rows to take from each source so their shares follow `weights` (largest-remainder rounding, exact sum)."""
    if any(w <= 0 for w in weights):
        raise StageError("build.weight / build.mix[].weight: every weight must be > 0")
    shares = [w / sum(weights) for w in weights]
    if total is None:
        total = int(min(n / p for n, p in zip(sizes, shares, strict=True)) + 1e-9)
    exact = [p * total for p in shares]
    counts = [int(x) for x in exact]
    order = sorted(range(len(exact)), key=lambda i: (counts[i] - exact[i], i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def take(samples: list[T], count: int, seed: int) -> list[T]:
    """`count` items drawn without replacement (whole passes repeat when count exceeds the source), in order."""
    if not samples or count == 0:
        return []
    rng = random.Random(seed)
    full, rest = divmod(count, len(samples))
    picked = list(range(len(samples))) * full + sorted(rng.sample(range(len(samples)), rest))
    return [samples[i] for i in sorted(picked)]


def problem_hash(problem: str) -> str:
    """What makes two samples the same prompt: the problem text, case and whitespace folded (hashed: 16 chars)."""
    return hashlib.blake2b(" ".join(problem.split()).lower().encode(), digest_size=8).hexdigest()


def split_groups(keys: list[str], fraction: float, seed: int) -> set[str]:
    """The prompt keys that go to validation: a seeded hash order, first round(fraction * prompts) of them."""
    if not 0 <= fraction < 1:
        raise StageError(f"build.validation_fraction: must be in [0, 1), got {fraction}")
    unique = sorted(set(keys), key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
    n_val = round(fraction * len(unique))
    if fraction > 0 and n_val == 0 and len(unique) > 1:
        n_val = 1
    return set(unique[:n_val])


def _source_name(path: Path) -> str:
    # In a run dir the folder is RUN_DIR/filter: the run's name says more than "filter".
    return (path.resolve().parent.name if path.name == "filter" else path.name) or "input"


def load_sources(cfg: Any, input_dir: Path) -> list[Source]:
    given = [(_source_name(input_dir), input_dir, cfg.weight)]
    given += [(m.name or _source_name(Path(m.path)), Path(m.path), m.weight) for m in cfg.mix]
    sources = []
    for name, path, weight in given:
        manifest = check_input(path, "filter")
        src = Source(name, path, weight, manifest, manifest_hash(path), *index_source(path))
        if not src.refs:
            raise StageError(
                f"{path}: no usable kept samples (0 rows with a closed <think> block in part-*.jsonl, "
                f"{src.unclosed} without); loosen the filter policy or generate more samples, then rerun filter"
            )
        sources.append(src)
    return sources


def picked_rows(src: Source, picked: list[tuple[int, int, str]]) -> Iterator[Sample]:
    """The rows of the picked samples, read back shard by shard in file order (a repeated pick repeats its row)."""
    want = Counter((shard, line) for shard, line, _ in picked)
    for i, path in enumerate(src.shards):
        for lineno, data in read_samples(path, src.path):
            for _ in range(want.get((i, lineno), 0)):
                yield Sample.from_dict(data)
