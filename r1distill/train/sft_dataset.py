"""The SFT dataset as TRL reads it: the build folder's parquet splits (or `sft.dataset`: a folder of parquet files
or a Hub id), reduced to the columns the trainer uses."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from r1distill.core.store import StageError, read_manifest


def load_splits(cfg: Any, input_dir: Path | None) -> tuple[Any, Any, dict[str, Any]]:
    """(train, validation or None, description) from the build folder or `cfg.dataset`."""
    import datasets

    source = Path(cfg.dataset) if cfg.dataset else input_dir
    if source is None:
        raise StageError("sft: no dataset; run build first, pass --input, or set sft.dataset")
    if cfg.dataset and not source.exists():
        try:
            loaded = datasets.load_dataset(cfg.dataset)
        except Exception as e:  # the Hub client raises many types; the user needs the id and the reason
            raise StageError(f"sft.dataset {cfg.dataset!r}: cannot load ({e})") from None
        return loaded["train"], loaded.get("validation") or loaded.get("test"), {"dataset": cfg.dataset}
    data = source / "data" if (source / "data").is_dir() else source
    files = {split: sorted(map(str, data.glob(f"{split}-*.parquet"))) for split in ("train", "validation")}
    if not files["train"]:
        raise StageError(f"sft: {source} holds no train-*.parquet; point sft.dataset (or --input) at a build folder")
    manifest = read_manifest(source) if input_dir and not cfg.dataset else None
    if input_dir and not cfg.dataset and not manifest:
        raise StageError(f"sft: {source} has no manifest.json (build did not finish); rerun build first")
    check_parquet(source, files, (manifest or {}).get("parquet_files"))
    splits = {k: datasets.load_dataset("parquet", data_files=v, split="train") for k, v in files.items() if v}
    card = source / "README.md"
    desc = {
        "dataset": str(source),
        "dataset_card_sha256": hashlib.sha256(card.read_bytes()).hexdigest() if card.exists() else None,
    }
    for name, split in splits.items():
        if "messages" not in split.column_names:
            raise StageError(f"sft: {files[name][0]} has no 'messages' column; build the dataset with r1distill build")
    return splits["train"], splits.get("validation"), desc


def check_parquet(source: Path, files: dict[str, list[str]], recorded: list[dict[str, Any]] | None) -> None:
    """Every parquet file opens, and (for a build folder) holds the rows its manifest recorded: a file cut short or
    swapped after build finished is one line naming it, not an Arrow traceback. Reads footers only."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = {str(source / f["name"]): f.get("rows") for f in recorded or []}
    for path in (p for paths in files.values() for p in paths):
        try:
            found = pq.ParquetFile(path).metadata.num_rows
        except (OSError, pa.ArrowException) as e:
            raise StageError(f"{path}: not a readable parquet file ({e}); rerun build (or restore the file)") from None
        if rows.get(path) is not None and found != rows[path]:
            raise StageError(f"{path}: {found} rows, but its manifest recorded {rows[path]}; rerun build")


def trainable(split, kd: bool):
    """Keep only what TRL trains on; build's bookkeeping columns (problem, ...) would confuse its collator. KD also
    keeps `meta`, which points each row at its teacher's logprob sidecar."""
    if split is None:
        return None
    keep = ("messages", "id", "meta") if kd else ("messages", "id")
    return split.select_columns([c for c in keep if c in split.column_names])
