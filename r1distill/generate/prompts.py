"""Prompt sources: local JSONL/JSON/parquet files, Hub datasets, or a built-in problem set, mapped to one shape.

Every source yields `Prompt`s; all rows are read and checked before any engine starts, so a malformed line or a
missing field fails in a second with the file, line and field named, not after a model has loaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1distill.core.store import StageError, read_jsonl
from r1distill.generate.problems import BUILTIN


@dataclass
class SourceConfig:
    """Where prompts come from and which fields hold what.

    Exactly one of `path` (local .jsonl/.json/.parquet), `hub` (a dataset id for `datasets.load_dataset`) or
    `builtin` (a generated set, see `r1distill.generate.problems`). `name` prefixes sample ids: `{name}/{row id}/{k}`.
    """

    name: str
    path: str | None = None
    hub: str | None = None
    builtin: str | None = None
    subset: str | None = None
    split: str = "train"
    problem_field: str = "problem"
    answer_field: str | None = "answer"
    id_field: str | None = None
    domain: str = "math"
    domain_field: str | None = None
    limit: int | None = None
    count: int = 32
    seed: int = 0


@dataclass
class Prompt:
    source: str
    row: str
    problem: str
    reference: Any
    domain: str


def _read_jsonl(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    for lineno, row in read_jsonl(path, skip_blank=True):
        if not isinstance(row, dict):
            raise StageError(f"{path}:{lineno}: expected a JSON object, got {type(row).__name__}")
        yield f"{path}:{lineno}", row


def _rows(src: SourceConfig, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    given = [k for k in ("path", "hub", "builtin") if getattr(src, k)]
    if len(given) != 1:
        raise StageError(f"{where}: give exactly one of path, hub or builtin (got {given or 'none'})")
    if src.builtin:
        if src.builtin not in BUILTIN:
            raise StageError(f"{where}.builtin: unknown set {src.builtin!r}; known: {', '.join(BUILTIN)}")
        for i, row in enumerate(BUILTIN[src.builtin](src.count, src.seed)):
            yield f"builtin:{src.builtin}[{i}]", row
        return
    if src.hub:
        import datasets

        try:
            ds = datasets.load_dataset(src.hub, src.subset, split=src.split)
        except Exception as e:  # the datasets library raises many types for a missing/offline dataset
            raise StageError(f"{where}.hub: cannot load {src.hub!r} split {src.split!r}: {e}") from None
        for i, row in enumerate(ds):
            yield f"{src.hub}[{i}]", row
        return
    path = Path(src.path).expanduser()
    if not path.exists():
        raise StageError(f"{where}.path: prompt file {path} does not exist")
    if path.suffix == ".jsonl":
        yield from _read_jsonl(path)
    elif path.suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as e:
            raise StageError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
        if not isinstance(data, list):
            raise StageError(f"{path}: expected a JSON list of objects")
        for i, row in enumerate(data):
            yield f"{path}[{i}]", row
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        for i, row in enumerate(pq.read_table(path).to_pylist()):
            yield f"{path}[row {i}]", row
    else:
        raise StageError(f"{where}.path: {path} must end in .jsonl, .json or .parquet")


def load_source(src: SourceConfig, where: str = "generate.sources", limit: int | None = None) -> list[Prompt]:
    """All prompts of one source, validated (see module doc). Row ids must be unique within a source.

    The smaller of the source's `limit` and `limit` applies (the first rows are taken)."""
    prompts: list[Prompt] = []
    seen: dict[str, str] = {}
    limits = [x for x in (src.limit, limit) if x is not None]
    cap = min(limits) if limits else None
    for i, (loc, row) in enumerate(_rows(src, where)):
        if cap is not None and len(prompts) >= cap:
            break
        problem = row.get(src.problem_field)
        if problem is None:
            raise StageError(
                f"{loc}: missing field {src.problem_field!r} (fields: {', '.join(map(str, row))}); "
                f"set problem_field in the recipe's source {src.name!r}"
            )
        if not isinstance(problem, str) or not problem.strip():
            raise StageError(f"{loc}: field {src.problem_field!r} is empty or not text")
        if src.answer_field and src.answer_field not in row:
            raise StageError(f"{loc}: missing field {src.answer_field!r}; set answer_field (or null for none)")
        if src.id_field:
            if row.get(src.id_field) is None:
                raise StageError(f"{loc}: missing id field {src.id_field!r}")
            rid = str(row[src.id_field]).replace("/", "_")
        else:
            rid = str(i)
        if rid in seen:
            raise StageError(f"{loc}: duplicate id {rid!r} (also at {seen[rid]}); ids must be unique per source")
        seen[rid] = loc
        domain = str(row.get(src.domain_field) or src.domain) if src.domain_field else src.domain
        reference = row.get(src.answer_field) if src.answer_field else None
        prompts.append(Prompt(src.name, rid, problem, reference, domain))
    if not prompts:
        raise StageError(f"{where}: source {src.name!r} yielded no prompts")
    return prompts


def load_prompts(
    sources: list[SourceConfig], limit: int | None = None, where: str = "generate.sources"
) -> list[Prompt]:
    """Every prompt of every source, in order; errors name `where[i]` (the recipe field)."""
    if not sources:
        raise StageError(f"{where}: no prompt source given; add at least one (path, hub or builtin)")
    names = [s.name for s in sources]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise StageError(f"{where}: source name {sorted(dup)[0]!r} used twice; names prefix ids")
    out: list[Prompt] = []
    for i, src in enumerate(sources):
        out.extend(load_source(src, f"{where}[{i}]", limit))
    return out
