"""The dataset card: Hub YAML metadata that huggingface_hub parses, and a body that states teacher, sampling,
every filter's drop count, decontamination per benchmark, length histograms and the producing command."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from huggingface_hub import DatasetCard, DatasetCardData
from test_build import make_kept, make_sample

from r1distill.build import stage as build
from r1distill.build.card import SIZE_CATEGORIES, command_line, length_stats, public_ref, size_category, table
from r1distill.build.stage import BuildConfig
from r1distill.core import models
from r1distill.core.store import ShardWriter, read_manifest, write_manifest

# The Hub's accepted values for the fields the card sets (huggingface.co/docs/hub/datasets-cards).
HUB_SIZE_CATEGORIES = {label for _, label in SIZE_CATEGORIES} | {"n>1T", "n>1B"}
HUB_TASK_CATEGORIES = {"text-generation", "question-answering", "text2text-generation"}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A run dir with generate/ and filter/ (kept + a decontam reject folder) and its build."""
    run = tmp_path_factory.mktemp("run")
    (run / "generate").mkdir()
    (run / "generate" / "manifest.json").write_text(
        json.dumps(
            {
                "stage": "generate",
                "teacher": "deepseek-ai/DeepSeek-R1",
                "sampling": {"temperature": 0.6, "top_p": 0.95, "max_tokens": 32768},
            }
        )  # fmt: skip
    )
    funnel = [
        {"step": "in", "count": 30, "remaining": 30},
        {"step": "contaminated", "check": "decontam", "dropped": 3, "remaining": 27},
        {"step": "truncated", "check": "finish_reason", "dropped": 4, "remaining": 23},
        {"step": "wrong_answer", "check": "verified", "dropped": 5, "remaining": 18},
        {"step": "kept", "count": 18, "remaining": 18},
    ]
    manifest = {"stage": "filter", "policy": "filters/r1.yaml", "counts": {"in": 30, "kept": 18}, "funnel": funnel}
    make_kept(run / "filter", [make_sample(i) for i in range(18)], manifest)
    with ShardWriter(run / "filter" / "rejected" / "contaminated") as w:
        for i, bench in enumerate(["aime24", "aime24", "math500"]):
            s = make_sample(100 + i)
            variant = "exact" if i == 0 else "ngram"
            details = {"benchmark": bench, "row": i, "overlap": 1.0, "variant": variant}
            s.meta["filter"] = {"check": "decontam", "reason": "contaminated", "details": details}
            w.write(s.to_json())
    with ShardWriter(run / "filter" / "rejected" / "truncated") as w:
        s = make_sample(200, closed=False)
        s.meta["filter"] = {"check": "finish_reason", "reason": "truncated", "details": {}}
        w.write(s.to_json())
    cfg = BuildConfig(tokenizer="bundled:smollm2", validation_fraction=0.2, pretty_name="Tiny R1 math", license="mit")
    build.run(cfg, run / "filter", run / "build")
    return run / "build"


def test_card_metadata_parses_with_hub_classes(built):
    card = DatasetCard.load(built / "README.md")
    assert isinstance(card.data, DatasetCardData)
    meta = card.data.to_dict()
    front = yaml.safe_load((built / "README.md").read_text().split("---\n")[1])
    assert front == meta  # plain YAML and the Hub's parser agree
    assert meta["license"] == "mit"
    assert meta["pretty_name"] == "Tiny R1 math"
    assert set(meta["task_categories"]) <= HUB_TASK_CATEGORIES and meta["task_categories"]
    assert meta["size_categories"] == ["n<1K"] and set(meta["size_categories"]) <= HUB_SIZE_CATEGORIES
    manifest = read_manifest(built)
    (config,) = meta["configs"]
    assert config["config_name"] == "default"
    splits = {f["split"]: f["path"] for f in config["data_files"]}
    assert set(splits) == set(manifest["counts"]) == {"train", "validation"}
    for split, pattern in splits.items():
        matched = sorted(p.name for p in built.glob(pattern))
        assert matched == sorted(Path(f["name"]).name for f in manifest["parquet_files"] if f["split"] == split)
    assert meta["r1distill"] == {
        "version": manifest["r1distill_version"],
        "config_hash": manifest["config_hash"],
        "content_hash": manifest["content_hash"],
        "input_hash": manifest["input_hash"],
    }


def test_card_body_states_provenance(built):
    text = (built / "README.md").read_text()
    manifest = read_manifest(built)
    assert "deepseek-ai/DeepSeek-R1" in text and "| temperature | 0.6 |" in text and "| max_tokens | 32768 |" in text
    for step, dropped in [("contaminated", 3), ("truncated", 4), ("wrong_answer", 5)]:
        assert re.search(rf"\| {step} \|[^\n]*\| {dropped} \|", text), step
    # Decontamination per benchmark, counted from the decontam rejects (not the truncated ones).
    assert re.search(r"\| aime24 \| 2 \| 1 \| 1 \|", text)
    assert re.search(r"\| math500 \| 1 \|", text)
    assert f"build config hash `{manifest['config_hash']}`" in text
    assert manifest["command"].split()[-1] in text
    assert "filters/r1.yaml" in text
    counts = manifest["counts"]
    assert f"| train | {counts['train']} |" in text and f"| validation | {counts['validation']} |" in text  # domains
    assert re.search(r"\| train \(completion_tokens\) \| \d+ \|", text)


def test_card_histograms_count_every_row(built):
    text = (built / "README.md").read_text()
    manifest = read_manifest(built)
    for split, n in manifest["counts"].items():
        section = text.split(f"Histogram of `num_tokens`, {split}:")[1].split("\n\n", 2)[1]
        rows = [line for line in section.splitlines() if re.match(r"\| \d", line)]
        assert sum(int(line.split("|")[2]) for line in rows) == n
        assert sum(manifest["lengths"][split]["histogram"]["counts"]) == n


def test_card_prefers_the_filter_manifest_decontamination_section(tmp_path, built):
    run = tmp_path / "run"
    shutil.copytree(built.parent / "filter", run / "filter")
    manifest = read_manifest(run / "filter")
    manifest["decontamination"] = {"gpqa": {"benchmark_problems": 198, "dropped": 0}}
    write_manifest(run / "filter", manifest)
    build.run(BuildConfig(), run / "filter", run / "build")
    text = (run / "build" / "README.md").read_text()
    assert re.search(r"\| gpqa \| 198 \| 0 \|", text) and "aime24" not in text
    assert "Teacher (sample meta)" in text  # no generate/ beside this filter folder


@pytest.mark.parametrize("n,label", [(0, "n<1K"), (999, "n<1K"), (1000, "1K<n<10K"), (250_000, "100K<n<1M")])
def test_size_category(n, label):
    assert size_category(n) == label


def test_length_stats_and_tables():
    stats = length_stats([10, 20, 30, 40, 1000], bins=4)
    assert stats["max"] == 1000 and stats["mean"] == 220.0 and stats["histogram"]["counts"] == [4, 0, 0, 1]
    assert length_stats([]) == {"n": 0}
    assert table([{"a": 1}, {"b": "x|y"}]) == ["| a | b |", "|---|---|", "| 1 |  |", "|  | x\\|y |"]
    assert table({"k": 2}) == ["| key | value |", "|---|---|", "| k | 2 |"]


def test_card_names_models_by_reference_never_by_machine_path(tmp_path):
    """A card pushed to the Hub names the teacher `bundled:smollm2` (not r1distill's cache folder on the machine that
    built it), engines' models and the tokenizer by reference, and the run's folders relative to it."""
    run = tmp_path / "run"
    cached = str(models.home() / "models" / "SmolLM2-135M-Instruct")  # what generate loaded: a path of this machine
    (run / "generate").mkdir(parents=True)
    (run / "generate" / "manifest.json").write_text(
        json.dumps(
            {"stage": "generate", "teacher": cached, "teacher_ref": "bundled:smollm2", "sampling": {"temperature": 0.6}}
        )  # fmt: skip
    )
    samples = [make_sample(i) for i in range(6)]
    for s in samples:
        s.meta["teacher"] = {"engine": "vllm", "model": cached, "vllm_version": "0.x"}
    make_kept(run / "filter", samples, {"stage": "filter", "counts": {"in": 6, "kept": 6}, "funnel": []})
    build.run(BuildConfig(tokenizer="bundled:smollm2", validation_fraction=0.2), run / "filter", run / "build")
    text = (run / "build" / "README.md").read_text()
    assert "Teacher (generate/manifest.json): `bundled:smollm2`" in text
    for machine_path in (cached, str(models.home()), str(tmp_path), "/.cache/"):
        assert machine_path not in text, machine_path
    # Each kind of reference, and commands recorded with absolute paths.
    assert public_ref(cached) == public_ref("bundled") == "bundled:smollm2"
    assert public_ref("deepseek-ai/DeepSeek-R1") == "deepseek-ai/DeepSeek-R1"
    snapshot = "/root/.cache/huggingface/hub/models--Qwen--Qwen2.5-0.5B-Instruct/snapshots/0123abc"
    assert public_ref(snapshot) == "Qwen/Qwen2.5-0.5B-Instruct"
    assert public_ref(str(tmp_path / "students" / "tiny")) == "local:tiny"
    assert public_ref({"engine": "vllm", "model": cached}) == {"engine": "vllm", "model": "bundled:smollm2"}
    cmd = command_line(f"/opt/venv/bin/r1distill build -c {tmp_path}/recipes/q.yaml -o {run}/build")
    assert cmd == "r1distill build -c q.yaml -o build" and str(tmp_path) not in cmd
