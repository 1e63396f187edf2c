"""JSONL shards, the manifest that marks a stage finished, and the lock that keeps two runs off one folder.

Layout of a stage's output folder::

    part-00000.jsonl        finished shards (renamed from .tmp once closed)
    part-00001.jsonl.tmp    the shard being appended to; each record is one flushed line
    manifest.json           written last, atomically: its presence means the stage finished

A process killed at any moment leaves at most one torn line at the end of a `.tmp` shard. `recover` drops that line
and seals the shard, so what is on disk afterwards is exactly the records that were fully written.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SHARD_GLOB = "part-*.jsonl"


class StageError(RuntimeError):
    """A user-facing error: the message names the file/field and what to do."""


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` via a temp file in the same folder + fsync + rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are meant to be read by others (e.g. a shared run dir)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_jsonl_atomic(path: str | Path, records: Iterable[dict[str, Any] | str]) -> int:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)


def move_into(staging: str | Path, output_dir: str | Path) -> None:
    """Move every entry of a finished staging folder into `output_dir` (same filesystem: renames), replacing what
    is there; a model folder is staged whole, then moved, so a reader never sees half of one. The manifest comes
    after, from the caller."""
    output_dir = Path(output_dir)
    for path in Path(staging).iterdir():
        target = output_dir / path.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(path, target)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _shard_index(path: Path) -> int:
    return int(path.name.split("-")[1].split(".")[0])


class ShardWriter:
    """Appends records to `part-NNNNN.jsonl.tmp`, one flushed line each, sealing a shard every `rows_per_shard`.

    Flushing per line (not fsync) is what makes SIGKILL safe: the kernel keeps what was written. `close` fsyncs.
    `write_blob` appends bytes to the open shard's binary sidecar (e.g. logprobs) and says where they went; call
    it before writing the record that points at them.
    """

    def __init__(self, out_dir: str | Path, rows_per_shard: int = 10_000):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.rows_per_shard = rows_per_shard
        existing = [_shard_index(p) for p in self.dir.glob("part-*.jsonl*")]
        self._next = max(existing, default=-1) + 1
        self._f = None
        self._side = None
        self._rows = 0
        self.written = 0

    def _open(self) -> None:
        self._path = self.dir / f"part-{self._next:05d}.jsonl.tmp"
        self._side_name = f"part-{self._next:05d}-{secrets.token_hex(4)}.bin"
        self._next += 1
        self._f = open(self._path, "a", encoding="utf-8")
        self._rows = 0

    def write_blob(self, blob: bytes) -> tuple[str, int]:
        """Append `blob` to the current shard's sidecar; returns (sidecar file name, offset)."""
        if self._f is None:
            self._open()
        if self._side is None:
            self._side = open(self.dir / (self._side_name + ".tmp"), "ab")
        offset = self._side.tell()
        self._side.write(blob)
        self._side.flush()
        return self._side_name, offset

    def write(self, record: dict[str, Any] | str) -> None:
        line = record if isinstance(record, str) else json.dumps(record, ensure_ascii=False)
        if "\n" in line:
            raise ValueError("a JSONL record must not contain a raw newline")
        if self._f is None:
            self._open()
        self._f.write(line + "\n")
        self._f.flush()
        self._rows += 1
        self.written += 1
        if self._rows >= self.rows_per_shard:
            self._seal()

    def _seal(self) -> None:
        if self._f is None:
            return
        if self._side is not None:
            os.fsync(self._side.fileno())
            self._side.close()
            self._side = None
            os.replace(self.dir / (self._side_name + ".tmp"), self.dir / self._side_name)
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        self._f = None
        os.replace(self._path, self._path.with_suffix(""))

    def close(self) -> None:
        self._seal()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def recover(out_dir: str | Path) -> int:
    """Seal every `.tmp` shard left by a killed run, dropping a torn last line. Returns the number of lines dropped."""
    dropped = 0
    for tmp in sorted(Path(out_dir).glob("part-*.jsonl.tmp")):
        data = tmp.read_bytes()
        keep = data[: data.rfind(b"\n") + 1]  # a record counts only once its newline is on disk
        good: list[bytes] = []
        for line in keep.splitlines(keepends=True):
            try:
                json.loads(line)
                good.append(line)
            except ValueError:
                dropped += 1
        dropped += data != keep
        if good:
            atomic_write_text(tmp.with_suffix(""), b"".join(good).decode("utf-8"))
        tmp.unlink()
    for side in Path(out_dir).glob("part-*.bin.tmp"):  # bytes past the last record are never referenced
        os.replace(side, side.with_suffix(""))
    if dropped:
        log.warning("%s: dropped %d torn record(s) left by an interrupted run", out_dir, dropped)
    return dropped


def shard_paths(out_dir: str | Path) -> list[Path]:
    return sorted(Path(out_dir).glob(SHARD_GLOB), key=_shard_index)


def read_jsonl(path: str | Path, skip_blank: bool = False) -> Iterator[tuple[int, Any]]:
    """(line number, value) of every line of a JSONL file (`.gz` too): the one JSONL reader of the project.

    A line that is not UTF-8 or not JSON is an error naming the file and the line, never a traceback."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            for lineno, line in enumerate(f, 1):
                if skip_blank and not line.strip():
                    continue
                try:
                    yield lineno, json.loads(line)
                except UnicodeDecodeError as e:
                    raise StageError(
                        f"{path}:{lineno}: not UTF-8 text (byte {line[e.start : e.start + 1]!r} at column "
                        f"{e.start + 1}); re-encode the file as UTF-8"
                    ) from None
                except ValueError as e:
                    torn = "" if line.endswith(b"\n") else " (a torn last line: the writer was cut off)"
                    raise StageError(f"{path}:{lineno}: malformed JSON record ({e}){torn}") from None
    except FileNotFoundError:
        raise StageError(f"{path}: no such file") from None


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Lists of `size` consecutive items (the last one shorter); `itertools.batched` from Python 3.12 on."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def iter_records(out_dir: str | Path, required: tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
    """Every record of a stage folder, shard by shard. A malformed line, a record that is not an object or one
    missing a `required` field is an error naming file and line."""
    for path in shard_paths(out_dir):
        for lineno, record in read_jsonl(path):
            if not isinstance(record, dict):
                raise StageError(f"{path}:{lineno}: not a JSON object; this folder is not a stage output")
            for key in required:
                if key not in record:
                    raise StageError(
                        f"{path}:{lineno}: record {record.get('id')!r} has no {key!r} field; "
                        "this is not the output of the stage before (or an old one): rerun that stage"
                    )
            yield record


def read_manifest(out_dir: str | Path) -> dict[str, Any] | None:
    path = Path(out_dir) / MANIFEST
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def require_complete(out_dir: str | Path, stage: str) -> dict[str, Any]:
    """The manifest of a finished stage, or an error telling the user to (re)run that stage."""
    manifest = read_manifest(out_dir)
    if manifest is None:
        raise StageError(f"{out_dir}: no {MANIFEST}; the {stage} stage did not finish there. Run it (again) first.")
    return manifest


def clear_manifest(out_dir: str | Path) -> None:
    """Called when a stage starts: an output being (re)written must not look finished."""
    with contextlib.suppress(FileNotFoundError):
        (Path(out_dir) / MANIFEST).unlink()


def write_manifest(out_dir: str | Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Record each shard's rows, size and sha256 in the manifest and write it last, atomically."""
    files = []
    for path in shard_paths(out_dir):
        h, rows, size = hashlib.sha256(), 0, 0
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
                rows += block.count(b"\n")
                size += len(block)
        files.append({"name": path.name, "rows": rows, "bytes": size, "sha256": h.hexdigest()})
    manifest = {**manifest, "files": files}
    atomic_write_text(Path(out_dir) / MANIFEST, json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    return manifest


def manifest_hash(out_dir: str | Path) -> str | None:
    path = Path(out_dir) / MANIFEST
    return sha256_file(path)[:16] if path.exists() else None


def check_shards(folder: str | Path, manifest: dict[str, Any], stage: str) -> None:
    """Refuse a finished folder whose shards are no longer what its manifest recorded (a shard that lost or gained
    lines, was replaced or deleted, or one the manifest does not list). Sizes are compared (a stat, no read); rows
    are counted only for manifests that recorded no size."""
    folder = Path(folder)
    listed = {f["name"]: f for f in manifest.get("files", [])}
    rerun = f"rerun the {stage} stage (or restore the file)"
    for path in shard_paths(folder):
        if path.name not in listed:
            raise StageError(f"{path}: a shard that {folder / MANIFEST} does not list; remove it or {rerun}")
    for name, entry in listed.items():
        path = folder / name
        if not path.exists():
            raise StageError(f"{path}: listed in {folder / MANIFEST} but missing; {rerun}")
        if "bytes" in entry:
            size = path.stat().st_size
            if size != entry["bytes"]:
                raise StageError(f"{path}: {size} bytes, but its manifest recorded {entry['bytes']}; {rerun}")
        elif "rows" in entry:
            with open(path, "rb") as f:
                rows = sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b""))
            if rows != entry["rows"]:
                raise StageError(f"{path}: {rows} rows, but its manifest recorded {entry['rows']}; {rerun}")


@contextlib.contextmanager
def locked(out_dir: str | Path, enabled: bool = True) -> Iterator[None]:
    """Hold an exclusive lock on a stage folder: a second run on the same folder fails at once instead of
    interleaving its records with the first one's. `enabled=False` (ranks other than 0) only makes the folder."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not enabled:
        yield
        return
    try:
        with FileLock(out_dir / ".lock", timeout=0):
            yield
    except Timeout:
        raise StageError(f"{out_dir}: another r1distill process is writing here; wait for it or stop it") from None
