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
    if input_dir and not cfg.dataset and not read_manifest(source):
        raise StageError(f"sft: {source} has no manifest.json (build did not finish); rerun build first")
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


def trainable(split, kd: bool):
    """Keep only what TRL trains on; build's bookkeeping columns (problem, ...) would confuse its collator. KD also
    keeps `meta`, which points each row at its teacher's logprob sidecar."""
    if split is None:
        return None
    keep = ("messages", "id", "meta") if kd else ("messages", "id")
    return split.select_columns([c for c in keep if c in split.column_names])
