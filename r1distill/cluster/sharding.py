"""Deterministic prompt shards for N independent jobs (a Slurm array, one per node), and their merge.

A prompt belongs to shard `sha256("{source}/{row}") mod N`: independent of file order and of other prompts, so a
shard can be rerun alone and lands on the same prompts. Shard i of N writes `OUTPUT/shards/i-of-N/` with its own
manifest; the merge refuses to run until every shard has one, then hard-links their files into OUTPUT.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from r1distill.core.store import StageError, read_manifest, recover, shard_paths


def parse_shard(spec: str) -> tuple[int, int]:
    """`"i/N"` (0 <= i < N) -> (i, N)."""
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise StageError(f"generate.shard: expected i/N such as 0/8, got {spec!r}") from None
    if not 0 <= i < n:
        raise StageError(f"generate.shard: need 0 <= i < N, got {spec!r}")
    return i, n


def shard_of(source: str, row: str, n: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{source}/{row}".encode()).digest()[:8], "big") % n


def shard_dir(output_dir: Path, i: int, n: int) -> Path:
    return Path(output_dir) / "shards" / f"{i}-of-{n}"


def link_shards(output_dir: Path, n: int, content_hash: str) -> list[dict[str, Any]]:
    """Check all N shards finished with the same teacher config, then link their shard files into `output_dir`.

    Returns the shard manifests. Files already linked by an earlier (interrupted) merge are replaced.
    """
    if (Path(output_dir) / "_generate_state.json").exists():
        raise StageError(f"{output_dir} holds an unsharded run; merge the shards into another --output")
    manifests = []
    for i in range(n):
        folder = shard_dir(output_dir, i, n)
        manifest = read_manifest(folder)
        if manifest is None:
            raise StageError(
                f"shard {i}/{n} is not finished ({folder} has no manifest.json); run it with --shard {i}/{n}"
            )
        if manifest.get("content_hash") != content_hash:
            raise StageError(f"shard {i}/{n} ({folder}) was generated with a different teacher/sampling config")
        manifests.append(manifest)
    recover(output_dir)
    for old in shard_paths(output_dir):
        old.unlink()
    for old in Path(output_dir).glob("part-*.bin"):
        old.unlink()
    index = 0
    for i in range(n):
        folder = shard_dir(output_dir, i, n)
        for src in shard_paths(folder):
            _link(src, Path(output_dir) / f"part-{index:05d}.jsonl")
            index += 1
        for side in folder.glob("part-*.bin"):  # unique names: samples point at them unchanged
            _link(side, Path(output_dir) / side.name)
    return manifests


def _link(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem: copy instead
        shutil.copyfile(src, dst)
