"""The dataset card (README.md) of a built SFT dataset: Hub YAML metadata plus what a reader needs to trust the data.

The card states the teacher and its sampling settings, every filter step with its drop count, decontamination per
benchmark, token-length statistics and histograms (as text bars: no plotting dependency, renders on the Hub), and
the exact command and config hash that produced it. The `r1distill:` metadata block carries the content hash that
`publish` compares before overwriting a dataset on the Hub.

The card is meant for the Hub, so it names models by reference (`bundled:smollm2`, a Hub id, `local:<folder name>`)
and folders relative to the run, never by a path of the machine that built it (`public_ref`, `public_path`).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
from huggingface_hub import DatasetCardData

from r1distill import __version__
from r1distill.core import models
from r1distill.core.models import _SMOL_DIR as BUNDLED_DIR  # the bundled teacher's folder in the model cache
from r1distill.core.store import read_jsonl, read_manifest, shard_paths

log = logging.getLogger(__name__)

# The Hub's size_categories buckets, as (upper bound exclusive, label).
SIZE_CATEGORIES = [
    (1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"),
]  # fmt: skip
HIST_BINS = 10
FUNNEL_COLUMNS = ("step", "check", "dropped", "remaining")
BAR_WIDTH = 30


_HF_SNAPSHOT = re.compile(r"models--([^/]+)--([^/]+)/snapshots/")


def public_ref(value: Any) -> Any:
    """A model as a card on the Hub may name it: the bundled teacher's converted folder (in r1distill's cache) as
    `bundled:smollm2`, a Hub cache snapshot as its Hub id, a Hub id as itself, any other local folder as
    `local:<folder name>`. Dicts (an engine's description) have their `model` made public too."""
    if isinstance(value, dict):
        return {k: public_ref(v) if k == "model" else v for k, v in value.items()}
    if not isinstance(value, str) or not value:
        return value
    if value in (models.BUNDLED, "bundled", "default"):
        return models.BUNDLED
    snapshot = _HF_SNAPSHOT.search(value)
    if snapshot:
        return f"{snapshot.group(1)}/{snapshot.group(2)}"
    path = Path(value).expanduser()
    cache = models.home() / "models"
    if path.is_absolute() and (path == cache or cache in path.parents or "/r1distill/models/" in value):
        return models.BUNDLED if BUNDLED_DIR in path.parts else f"local:{path.name}"
    if value.startswith((".", "/", "~")) or not models.HUB_ID.match(value) or path.exists():
        return f"local:{path.name or value}"
    return value


def public_path(value: str, root: Path | None = None) -> str:
    """A folder as the card shows it: relative to `root` (the run) or the current directory when inside it, else
    its name alone."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        return value
    for base in (root, Path.cwd()):
        if base is not None:
            try:
                return str(path.resolve().relative_to(Path(base).resolve()))
            except ValueError:
                pass
    return path.name


def size_category(n: int) -> str:
    return next((label for bound, label in SIZE_CATEGORIES if n < bound), "n>1B")


def length_stats(lengths: list[int], bins: int = HIST_BINS) -> dict[str, Any]:
    """Distribution of token counts: n, mean, percentiles, max, total, and a histogram (edges, counts)."""
    values = np.asarray(lengths)
    if values.size == 0:
        return {"n": 0}
    q = np.percentile(values, [50, 90, 99])
    counts, edges = np.histogram(values, bins=bins)
    return {
        "n": int(values.size), "mean": round(float(values.mean()), 1), "p50": float(q[0]), "p90": float(q[1]),
        "p99": float(q[2]), "max": int(values.max()), "total": int(values.sum()),
        "histogram": {"edges": [round(float(e), 1) for e in edges], "counts": [int(c) for c in counts]},
    }  # fmt: skip


def card_data(cfg: Any, manifest: dict[str, Any]) -> DatasetCardData:
    """The YAML metadata: license, task category, size category, one parquet config per split, provenance."""
    n = sum(manifest["counts"].values())
    return DatasetCardData(
        license=cfg.license,
        language=list(cfg.language),
        task_categories=["text-generation"],
        size_categories=[size_category(n)],
        pretty_name=cfg.pretty_name or "r1distill SFT dataset",
        tags=["reasoning", "distillation", "synthetic", "r1distill"],
        configs=[
            {
                "config_name": "default",
                "data_files": [{"split": s, "path": f"data/{s}-*"} for s in manifest["counts"]],
            }
        ],
        r1distill={
            "version": __version__,
            "config_hash": manifest["config_hash"],
            "content_hash": manifest["content_hash"],
            "input_hash": manifest["input_hash"],
        },
    )


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text.replace("|", "\\|").replace("\n", " ")


def table(value: Any) -> list[str]:
    """A markdown table for whatever a manifest section holds: a list of records, a mapping, or a value."""
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        cols = list(dict.fromkeys(k for v in value for k in v))
        lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        return lines + ["| " + " | ".join(_cell(v.get(c, "")) for c in cols) + " |" for v in value]
    if isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
        return table([{"": k, **v} for k, v in value.items()])
    if isinstance(value, dict) and value:
        return ["| key | value |", "|---|---|"] + [f"| {_cell(k)} | {_cell(v)} |" for k, v in value.items()]
    return ["```json", json.dumps(value, indent=2, ensure_ascii=False), "```"]


def histogram_lines(stats: dict[str, Any]) -> list[str]:
    hist = stats.get("histogram")
    if not hist:
        return ["(no rows)"]
    top = max(hist["counts"]) or 1
    lines = ["| tokens | rows | |", "|---|---:|---|"]
    for lo, hi, c in zip(hist["edges"][:-1], hist["edges"][1:], hist["counts"], strict=True):
        lines.append(f"| {lo:g}-{hi:g} | {c} | {'█' * round(BAR_WIDTH * c / top)} |")
    return lines


def decontamination(manifest: dict[str, Any], folder: Path) -> Any:
    """Per-benchmark decontamination results: the filter manifest's own section when it has one, otherwise counted
    from the samples it set aside with `meta.filter.check == "decontam"` (benchmark named in the details)."""
    for key in ("decontamination", "decontam"):
        if manifest.get(key):
            return manifest[key]
    hits: dict[str, dict[str, int]] = {}
    for reason_dir in sorted((folder / "rejected").glob("*")):
        for path in shard_paths(reason_dir):
            for _, record in read_jsonl(path):
                info = record.get("meta", {}).get("filter", {})
                if info.get("check") != "decontam":
                    break
                bench = str(info.get("details", {}).get("benchmark", "unknown"))
                variant = str(info.get("details", {}).get("variant", "match"))
                hits.setdefault(bench, {"dropped": 0})
                hits[bench]["dropped"] += 1
                hits[bench][variant] = hits[bench].get(variant, 0) + 1
    return hits


def teacher_info(folder: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Teacher and sampling settings: from the generate manifest beside the filter folder, else a sample's meta."""
    gen = read_manifest(folder.parent / "generate") if (folder.parent / "generate").is_dir() else None
    if gen and "teacher" in gen:  # `teacher_ref` is the recipe's reference, `teacher` what was loaded (a path)
        return {"teacher": gen.get("teacher_ref") or gen["teacher"], "sampling": gen.get("sampling"),
                "from": "generate/manifest.json", "engine": meta.get("teacher")}  # fmt: skip
    return {"teacher": meta.get("teacher"), "sampling": meta.get("sampling"), "from": "sample meta", "engine": None}


def _source_section(src: Any) -> list[str]:
    m = src.manifest
    info = teacher_info(Path(src.path), src.first_meta)
    teacher, engine = public_ref(info["teacher"]), public_ref(info["engine"])
    lines = [f"### Source `{src.name}`", "", f"Teacher ({info['from']}): `{_cell(teacher)}`"]
    if engine and engine != teacher:
        lines[-1] += f", as run: `{_cell(engine)}`"
    lines.append("")
    lines += ["Sampling:", "", *table(info["sampling"] or {}), ""]
    lines += ["Filters (every step with its drop count):", ""]
    funnel = m.get("funnel")
    if isinstance(funnel, list) and all(isinstance(f, dict) for f in funnel):
        funnel = [{**{k: f.get(k, "") for k in FUNNEL_COLUMNS}, **f} for f in funnel]  # the usual columns first
    if funnel:
        lines += table(funnel)
    elif m.get("reasons") is not None:
        lines += table(m["reasons"] or {"(no drops)": 0})
    else:
        lines.append("(the input manifest records no filter steps)")
    if m.get("policy"):
        lines += ["", f"Policy: `{m['policy']}` (sha256 `{m.get('policy_sha256', '')}`)"]
    for key in ("stats",):
        if m.get(key):
            lines += ["", f"Filter {key}:", "", *table(m[key])]
    decon = decontamination(m, Path(src.path))
    lines += ["", "Decontamination per benchmark:", ""]
    lines += table(decon) if decon else ["(no benchmark matches recorded; see the filter config for the benchmarks)"]
    return lines + [""]


def command_line(argv: str) -> str:
    """The recorded command as a person would type it: `python -m r1distill.build ...` for a module run; path
    arguments relative to the current directory (or by name), never this machine's absolute paths."""
    head, _, rest = argv.partition(" ")
    rest = " ".join(public_path(a) if a.startswith(("/", "~")) else a for a in rest.split(" ")) if rest else ""
    if head.endswith(("r1distill/build/__main__.py", "r1distill/build/stage.py")):
        return f"python -m r1distill.build {rest}".strip()
    if head.endswith("r1distill/__main__.py") or head.endswith("/r1distill"):
        return f"r1distill {rest}".strip()
    return f"{Path(head).name if head.startswith(('/', '~')) else head} {rest}".strip()


def render_card(cfg: Any, manifest: dict[str, Any], sources: list) -> str:
    """The full README.md: YAML front matter, then format, provenance, filters, decontamination and lengths."""
    data = card_data(cfg, manifest)
    name = cfg.pretty_name or "r1distill SFT dataset"
    counts = manifest["counts"]
    lines = [
        "---", data.to_yaml(), "---", "", f"# {name}", "",
        "Reasoning traces distilled from a teacher model by r1distill, ready for TRL's "
        "`SFTTrainer`: each row's `messages` hold the prompt turns and an assistant turn "
        "`<think>\\n{reasoning}\\n</think>\\n\\n{answer}`."
        + (" `prompt`/`completion` hold the same conversation split for prompt-completion training." if
           cfg.prompt_completion else ""),
        "", "| split | rows | prompts |", "|---|---:|---:|",
        *[f"| {s} | {n} | {manifest['prompts'][s]} |" for s, n in counts.items()],
        "", "Train and validation are split by prompt: no prompt appears in both. Rows per domain:", "",
        *table(manifest.get("domains", {})), "",
        "```python", "from datasets import load_dataset", "ds = load_dataset(\"<this repo or folder>\")", "```", "",
        "## Sources and mixing", "",
        *table([{**src, "path": public_path(str(src.get("path", "")))} for src in manifest["sources"]]), "",
        "## Teacher, sampling, filters, decontamination", "",
    ]  # fmt: skip
    for src in sources:
        lines += _source_section(src)
    lines += [
        "## Token lengths",
        "",
        f"Counted with the student tokenizer `{public_ref(cfg.tokenizer)}` over the conversation rendered by its chat "
        "template (`num_tokens`; `completion_tokens` is the assistant turn alone).",
        "",
    ]
    stat_keys = ("n", "mean", "p50", "p90", "p99", "max", "total")
    lines += ["| split | " + " | ".join(stat_keys) + " |", "|---" * (len(stat_keys) + 1) + "|"]
    for key, title in (("lengths", "num_tokens"), ("completion_lengths", "completion_tokens")):
        lines += [f"| {s} ({title}) | " + " | ".join(str(st.get(k, "")) for k in stat_keys) + " |"
                  for s, st in manifest.get(key, {}).items()]  # fmt: skip
    for split, stats in manifest["lengths"].items():
        lines += ["", f"Histogram of `num_tokens`, {split}:", "", *histogram_lines(stats)]
    lines += [
        "", "## Reproduce", "", "```", command_line(manifest["command"]), "```", "",
        f"- r1distill {manifest['r1distill_version']}, build config hash `{manifest['config_hash']}`, "
        f"input manifest hash `{manifest['input_hash']}`, content hash `{manifest['content_hash']}`",
        f"- created {manifest['created']}", "",
    ]  # fmt: skip
    return "\n".join(lines)
