"""The output side of build: rows into parquet shards `data/{split}-NNNNN-of-NNNNN.parquet`, each written to a temp
file and renamed, with what the manifest and card report (row hash, token counts, domains, prompts)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

from r1distill.build.sources import problem_hash
from r1distill.core.store import sha256_file


def schema(with_prompt_completion: bool):
    import pyarrow as pa

    msgs = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    cols = [("id", pa.string()), ("source", pa.string()), ("domain", pa.string()), ("problem", pa.string()),
            ("reference", pa.string()), ("messages", msgs), ("meta", pa.string())]  # fmt: skip
    if with_prompt_completion:
        cols += [("prompt", msgs), ("completion", msgs)]
    return pa.schema(cols + [("num_tokens", pa.int64()), ("completion_tokens", pa.int64())])


class SplitWriter:
    """Rows of one split into `data/{split}-NNNNN-of-NNNNN.parquet`, `per_shard` rows a file, appended in row groups
    so that memory holds one batch, never the split. Each file is written as a temp file and renamed when full.
    Also keeps what the manifest and card report: a hash of the rows, token counts, domains, prompts."""

    def __init__(self, out_dir: Path, split: str, total: int, per_shard: int, schema):
        self.dir, self.split, self.per_shard, self.schema = out_dir / "data", split, per_shard, schema
        self.n_shards = max(1, -(-total // per_shard))
        self.shard = self.in_shard = 0
        self.writer = self.tmp = None
        self.files: list[dict[str, Any]] = []
        self.hash = hashlib.sha256(split.encode())
        self.num_tokens: list[int] = []
        self.completion_tokens: list[int] = []
        self.domains: Counter[str] = Counter()
        self.prompts: set[str] = set()

    def _path(self) -> Path:
        return self.dir / f"{self.split}-{self.shard:05d}-of-{self.n_shards:05d}.parquet"

    def _append(self, rows: list[dict[str, Any]]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.writer is None:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd, self.tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{self._path().name}.", suffix=".tmp")
            os.close(fd)
            self.writer = pq.ParquetWriter(self.tmp, self.schema)
        self.writer.write_table(pa.Table.from_pylist(rows, schema=self.schema))
        self.in_shard += len(rows)
        if self.in_shard >= self.per_shard:
            self._seal()

    def _seal(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        path = self._path()
        os.chmod(self.tmp, 0o644)  # mkstemp makes it private; a dataset is meant to be read by others
        os.replace(self.tmp, path)
        self.files.append({"name": f"data/{path.name}", "split": self.split, "rows": self.in_shard,
                           "sha256": sha256_file(path)})  # fmt: skip
        self.writer = self.tmp = None
        self.shard, self.in_shard = self.shard + 1, 0

    def write(self, rows: list[dict[str, Any]]) -> None:
        for row in rows:
            self.hash.update(json.dumps(row, sort_keys=True, ensure_ascii=False).encode())
            self.num_tokens.append(row["num_tokens"])
            self.completion_tokens.append(row["completion_tokens"])
            self.domains[row["domain"]] += 1
            self.prompts.add(problem_hash(row["problem"]))
        while rows:
            room = self.per_shard - self.in_shard
            self._append(rows[:room])
            rows = rows[room:]

    def close(self) -> None:
        self._seal()

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.tmp)


def content_hash(writers) -> str:
    """A hash of the rows themselves (not the parquet bytes, which depend on the pyarrow version)."""
    return hashlib.sha256("".join(w.hash.hexdigest() for w in writers).encode()).hexdigest()[:16]
