"""Prompt sources: local JSONL/JSON/parquet files, Hub datasets, or a built-in problem set, mapped to one shape.

Every source yields `Prompt`s, read lazily (`iter_prompts`): a run holds one row at a time, whatever the number of
prompts. `scan_prompts` reads and checks all rows once before any engine starts, so a malformed line, a bad byte
or a missing field fails in a second with the file, line and field named, not after a model has loaded.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from r1distill.core.records import key_hash
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
    loc: str = ""  # file:line (or dataset[row]) it came from, for messages


def _decode(raw: bytes, path: Path, lineno: int) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise StageError(
            f"{path}:{lineno}: not UTF-8 text (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
            "re-save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from None


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
        raw = path.read_bytes()
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as e:
            lineno = raw.count(b"\n", 0, e.start) + 1
            _decode(raw.splitlines()[lineno - 1], path, lineno)
        try:
            data = json.loads(raw)
        except ValueError as e:
            raise StageError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
        if not isinstance(data, list):
            raise StageError(f"{path}: expected a JSON list of objects")
        for i, row in enumerate(data):
            yield f"{path}[{i}]", row
    elif path.suffix == ".parquet":
        import pyarrow.parquet as pq

        i = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):  # a batch at a time, never the whole file
            for row in batch.to_pylist():
                yield f"{path}[row {i}]", row
                i += 1
    else:
        raise StageError(f"{where}.path: {path} must end in .jsonl, .json or .parquet")


def iter_source(src: SourceConfig, where: str = "generate.sources", limit: int | None = None) -> Iterator[Prompt]:
    """The prompts of one source, each row validated as it is read (see module doc); one row in memory at a time.

    The smaller of the source's `limit` and `limit` applies (the first rows are taken). Ids are not checked for
    uniqueness here: `load_source` and `scan_prompts` do that."""
    limits = [x for x in (src.limit, limit) if x is not None]
    cap = min(limits) if limits else None
    count = 0
    for i, (loc, row) in enumerate(_rows(src, where)):
        if cap is not None and count >= cap:
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
        domain = str(row.get(src.domain_field) or src.domain) if src.domain_field else src.domain
        reference = row.get(src.answer_field) if src.answer_field else None
        count += 1
        yield Prompt(src.name, rid, problem, reference, domain, loc)
    if not count:
        raise StageError(f"{where}: source {src.name!r} yielded no prompts")


def load_source(src: SourceConfig, where: str = "generate.sources", limit: int | None = None) -> list[Prompt]:
    """All prompts of one source as a list, validated; row ids must be unique within a source."""
    prompts: list[Prompt] = []
    seen: dict[str, str] = {}
    for p in iter_source(src, where, limit):
        if p.row in seen:
            raise StageError(f"{p.loc}: duplicate id {p.row!r} (also at {seen[p.row]}); ids must be unique per source")
        seen[p.row] = p.loc
        prompts.append(p)
    return prompts


def _check_names(sources: list[SourceConfig], where: str) -> None:
    if not sources:
        raise StageError(f"{where}: no prompt source given; add at least one (path, hub or builtin)")
    names = [s.name for s in sources]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise StageError(f"{where}: source name {sorted(dup)[0]!r} used twice; names prefix ids")


def load_prompts(
    sources: list[SourceConfig], limit: int | None = None, where: str = "generate.sources"
) -> list[Prompt]:
    """Every prompt of every source, in order; errors name `where[i]` (the recipe field)."""
    _check_names(sources, where)
    out: list[Prompt] = []
    for i, src in enumerate(sources):
        out.extend(load_source(src, f"{where}[{i}]", limit))
    return out


def iter_prompts(
    sources: list[SourceConfig], limit: int | None = None, where: str = "generate.sources"
) -> Iterator[Prompt]:
    """Every prompt of every source, in order, read lazily: what a run of any size streams through."""
    _check_names(sources, where)
    for i, src in enumerate(sources):
        yield from iter_source(src, f"{where}[{i}]", limit)


def scan_prompts(
    sources: list[SourceConfig],
    limit: int | None = None,
    where: str = "generate.sources",
    keep: Callable[[Prompt], bool] | None = None,
    each: Callable[[Prompt], None] | None = None,
) -> np.ndarray:
    """Read every prompt once, before anything slow starts: every row is validated, ids must be unique per source,
    and `each` sees each prompt that `keep` accepts (e.g. a length check). Returns the sorted key hashes of the
    kept prompts (`key_hash(source, row)`), so memory grows by 8 bytes a prompt, not by the prompts' text."""
    keys = array("Q")
    for p in iter_prompts(sources, limit, where):
        if keep is None or keep(p):
            keys.append(key_hash(p.source, p.row))
            if each is not None:
                each(p)
    ordered = np.sort(np.frombuffer(keys, dtype=np.uint64)) if keys else np.zeros(0, dtype=np.uint64)
    clash = np.flatnonzero(ordered[1:] == ordered[:-1])
    if clash.size:
        _name_duplicate(sources, limit, where, {int(ordered[clash[0]])})
    return ordered


def _name_duplicate(sources: list[SourceConfig], limit: int | None, where: str, hashes: set[int]) -> None:
    """Second pass, only when a hash repeats: find the two rows and name them (or accept a true hash collision)."""
    seen: dict[tuple[str, str], str] = {}
    for p in iter_prompts(sources, limit, where):
        if key_hash(p.source, p.row) in hashes:
            if (p.source, p.row) in seen:
                raise StageError(
                    f"{p.loc}: duplicate id {p.row!r} (also at {seen[p.source, p.row]}); ids must be unique per source"
                )
            seen[p.source, p.row] = p.loc
