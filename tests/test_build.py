"""The build stage: kept samples -> parquet + card that `datasets` loads, split by prompt, mixed by weight,
rendered through real chat templates with the `<think>` block intact; bad input exits 2 with a useful message."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from r1distill.build import stage as build
from r1distill.build.sources import mix_counts, problem_hash
from r1distill.build.stage import BuildConfig, MixSource, assistant_content
from r1distill.core.records import Sample
from r1distill.core.store import ShardWriter, StageError, read_manifest, write_manifest

REPO = Path(__file__).resolve().parents[1]
QUICKSTART = REPO / "runs" / "quickstart" / "generate"


def make_sample(i: int, source: str = "arith", k: int = 0, problem: str | None = None, closed: bool = True) -> Sample:
    problem = problem or f"What is {i} + {i + 1}?"
    tail = f"\n</think>\n\nThe answer is \\boxed{{{2 * i + 1}}}." if closed else " and then"
    return Sample(
        id=f"{source}/{i}/{k}",
        source=source,
        row=str(i),
        k=k,
        domain="math",
        problem=problem,
        messages=[{"role": "user", "content": problem + "\nPlease reason step by step."}],
        reference=str(2 * i + 1),
        completion=f"<think>\nOkay, {i} plus {i + 1}.\n\nThat is {2 * i + 1}.{tail}",
        meta={"teacher": {"model": "bundled:smollm2"}, "sampling": {"temperature": 0.6}, "finish_reason": "stop"},
    )


def make_kept(folder: Path, samples: list[Sample], manifest: dict | None = None) -> Path:
    """A folder shaped like the filter stage's output: kept Sample shards and a manifest written last."""
    with ShardWriter(folder, rows_per_shard=7) as w:
        for s in samples:
            w.write(s.to_json())
    n = len(samples)
    default = {
        "stage": "filter",
        "counts": {"in": n + 3, "kept": n, "rejected": 3},
        "funnel": [
            {"step": "in", "count": n + 3, "remaining": n + 3},
            {"step": "wrong_answer", "check": "verified", "dropped": 3, "remaining": n},
            {"step": "kept", "count": n, "remaining": n},
        ],
        "reasons": {"wrong_answer": 3},
    }
    write_manifest(folder, manifest or default)
    return folder


@pytest.fixture(scope="module")
def tiny_student(tmp_path_factory) -> Path:
    from r1distill.testing.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("student") / "qwen2", "qwen2")


def load(out: Path, tmp_path: Path):
    import datasets

    return datasets.load_dataset(str(out), cache_dir=str(tmp_path / "hf-cache"))


def check_rows_equal_samples(ds, samples: list[Sample]) -> None:
    by_id = {s.id: s for s in samples}
    rows = [row for split in ds.values() for row in split]
    assert sorted(r["id"] for r in rows) == sorted(by_id)  # each kept sample exactly once
    for row in rows:
        s = by_id[row["id"]]
        assert row["messages"][:-1] == s.messages
        assert row["messages"][-1] == {"role": "assistant", "content": assistant_content(s.reasoning, s.answer)}
        assert (row["problem"], row["source"], row["domain"], row["reference"]) == (
            s.problem,
            s.source,
            s.domain,
            s.reference,
        )
        assert json.loads(row["meta"]) == s.meta
        assert row["num_tokens"] > row["completion_tokens"] > 0


def test_round_trip_rows_equal_kept_samples(tmp_path, tiny_student):
    samples = [make_sample(i, k=k) for i in range(10) for k in range(2)]
    unclosed = make_sample(99, closed=False)
    src = make_kept(tmp_path / "run" / "filter", [*samples, unclosed])
    out = tmp_path / "run" / "build"
    cfg = BuildConfig(tokenizer=str(tiny_student), validation_fraction=0.2, prompt_completion=True)
    manifest = build.run(cfg, src, out)
    ds = load(out, tmp_path)
    assert set(ds) == {"train", "validation"}
    check_rows_equal_samples(ds, samples)  # the unclosed sample is not a training row...
    assert manifest["sources"][0]["skipped_unclosed_think"] == 1  # ...and is counted, not silently lost
    row = ds["train"][0]
    assert row["prompt"] + row["completion"] == row["messages"]
    assert manifest["counts"] == {"train": len(ds["train"]), "validation": len(ds["validation"])}
    assert (out / "README.md").exists() and read_manifest(out)["content_hash"] == manifest["content_hash"]
    assert not list((out / "data").glob("*.tmp"))
    assert build.summary(manifest).startswith(f"train {len(ds['train'])} rows, validation {len(ds['validation'])} rows")


def test_batches_and_shards_need_not_line_up(tmp_path, tiny_student, monkeypatch):
    """Rows stream through the tokenizer in batches and into shards in row groups: 5-row batches, 7-row shards."""
    monkeypatch.setattr(build, "TOKENIZE_BATCH", 5)
    samples = [make_sample(i, k=k) for i in range(11) for k in range(3)]
    cfg = BuildConfig(tokenizer=str(tiny_student), validation_fraction=0.3, rows_per_shard=7)
    manifest = build.run(cfg, make_kept(tmp_path / "kept", samples), tmp_path / "out")
    check_rows_equal_samples(load(tmp_path / "out", tmp_path), samples)
    for split, n in manifest["counts"].items():
        rows = [f["rows"] for f in manifest["parquet_files"] if f["split"] == split]
        assert sum(rows) == n and all(r == 7 for r in rows[:-1]) and 0 < rows[-1] <= 7
        assert len(rows) == -(-n // 7) and f"data/{split}-{len(rows) - 1:05d}-of-{len(rows):05d}.parquet" in [
            f["name"] for f in manifest["parquet_files"]
        ]
    ids = [s.id for s in samples]
    loaded = load(tmp_path / "out", tmp_path)
    assert [i for i in ids if i in set(loaded["train"]["id"])] == loaded["train"]["id"]  # input order kept


@pytest.mark.parametrize("which", ["tiny_qwen2", "bundled_teacher"])
def test_chat_template_keeps_think_block(tmp_path, tiny_student, teacher_dir, which):
    from transformers import AutoTokenizer

    student = tiny_student if which == "tiny_qwen2" else teacher_dir
    samples = [make_sample(i) for i in range(8)]
    samples.append(make_sample(50, problem="Multi-line:\n\n  keep   spacing\t<b>as is</b>"))
    out = tmp_path / "build"
    build.run(BuildConfig(tokenizer=str(student), validation_fraction=0.25), make_kept(tmp_path / "kept", samples), out)
    tok = AutoTokenizer.from_pretrained(student)
    for split in load(out, tmp_path).values():
        for row in split:
            s = next(x for x in samples if x.id == row["id"])
            block = f"<think>\n{s.reasoning}\n</think>\n\n{s.answer}"
            text = tok.apply_chat_template(row["messages"], tokenize=False)
            assert block in text
            ids = tok(text, add_special_tokens=False)["input_ids"]
            assert block in tok.decode(ids)  # the tokens, not just the string, carry the block
            assert len(ids) == row["num_tokens"]
            if "{% generation %}" in (tok.chat_template or "").replace("{%-", "{%"):
                enc = tok.apply_chat_template(
                    row["messages"], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
                )
                trained = [t for t, m in zip(enc["input_ids"], enc["assistant_masks"], strict=True) if m]
                assert block in tok.decode(trained)  # what assistant_only_loss trains on holds the reasoning


def test_template_that_strips_reasoning_is_refused(tmp_path, tiny_student):
    """DeepSeek-R1-Distill's template drops `<think>...</think>` from every assistant turn: SFT would train on
    answers alone. Build refuses such a student template."""
    from transformers import AutoTokenizer

    strip = tmp_path / "stripping"
    shutil.copytree(tiny_student, strip)
    tok = AutoTokenizer.from_pretrained(strip)
    tok.chat_template = (
        "{% for m in messages %}{% set c = m['content'] %}{% if m['role'] == 'assistant' and '</think>' in c %}"
        "{% set c = c.split('</think>')[-1] %}{% endif %}<|im_start|>{{ m['role'] }}\n{{ c }}<|im_end|>\n{% endfor %}"
    )
    tok.save_pretrained(strip)
    out = tmp_path / "build"
    with pytest.raises(StageError, match="drops or rewrites the <think> block"):
        build.run(BuildConfig(tokenizer=str(strip)), make_kept(tmp_path / "kept", [make_sample(1)]), out)
    assert not (out / "manifest.json").exists()


def test_split_has_no_prompt_on_both_sides(tmp_path, tiny_student):
    samples = [make_sample(i, k=k) for i in range(40) for k in range(3)]
    # The same problem under another source and row, differing only in case and spacing: still one prompt.
    samples += [make_sample(i, source="other", problem=f"what  is {i} + {i + 1}?") for i in range(0, 40, 4)]
    src = make_kept(tmp_path / "kept", samples)
    cfg = BuildConfig(tokenizer=str(tiny_student), validation_fraction=0.25, seed=3)
    m1 = build.run(cfg, src, tmp_path / "a")
    ds = load(tmp_path / "a", tmp_path)
    train = {problem_hash(p) for p in ds["train"]["problem"]}
    val = {problem_hash(p) for p in ds["validation"]["problem"]}
    assert train and val and not train & val
    assert len(val) == round(0.25 * 40)
    assert len(ds["train"]) + len(ds["validation"]) == len(samples)
    m2 = build.run(cfg, src, tmp_path / "b")
    assert m1["content_hash"] == m2["content_hash"]  # deterministic
    m3 = build.run(BuildConfig(tokenizer=str(tiny_student), validation_fraction=0.25, seed=4), src, tmp_path / "c")
    assert m3["content_hash"] != m1["content_hash"]  # the seed picks the validation prompts


@pytest.mark.parametrize(
    "sizes,weights,total",
    [([60, 50], [3, 1], None), ([60, 50], [3, 1], 200), ([7, 13, 101], [0.2, 0.3, 0.5], None), ([5, 5], [1, 2], 11)],
)
def test_mix_counts_follow_weights_within_rounding(sizes, weights, total):
    counts = mix_counts(sizes, weights, total)
    n = sum(counts)
    if total is not None:
        assert n == total
    else:
        assert all(c <= s for c, s in zip(counts, sizes, strict=True))
        assert any(c == s for c, s in zip(counts, sizes, strict=True))  # the scarcest source is used up
    for c, w in zip(counts, weights, strict=True):
        assert abs(c - n * w / sum(weights)) < 1


def test_mixing_sources_by_weight(tmp_path, tiny_student):
    a = make_kept(tmp_path / "a" / "filter", [make_sample(i, source="a") for i in range(60)])
    b = make_kept(tmp_path / "b", [make_sample(i, source="b", problem=f"B problem {i}") for i in range(50)])
    cfg = BuildConfig(tokenizer=str(tiny_student), weight=3, mix=[MixSource(path=str(b), weight=1, name="bee")])
    manifest = build.run(cfg, a, tmp_path / "out")
    ds = load(tmp_path / "out", tmp_path)
    by_source = Counter(s for split in ds.values() for s in split["source"])
    assert by_source == {"a": 60, "b": 20}
    assert [s["rows"] for s in manifest["sources"]] == [60, 20]
    assert manifest["sources"][1]["name"] == "bee"
    ids = [i for split in ds.values() for i in split["id"]]
    assert len(ids) == len(set(ids))  # no repeats needed at the default total
    cfg.total = 200  # upsampling: b's 50 samples each appear once, a's 60 repeat to 150
    build.run(cfg, a, tmp_path / "up")
    ups = Counter(s for split in load(tmp_path / "up", tmp_path).values() for s in split["source"])
    assert ups == {"a": 150, "b": 50}


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "r1distill.build", *args], capture_output=True, text=True, cwd=cwd, timeout=120
    )


def _recipe(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(f"name: t\nrun_dir: {tmp_path / 'run'}\nbuild:\n{body}")
    return path


def test_rerun_is_skipped_then_rebuilt_on_change(tmp_path, tiny_student, monkeypatch, caplog):
    """`main` in process (as `python -m r1distill.build` calls it: sys.argv set the same way), to spare imports."""
    make_kept(tmp_path / "run" / "filter", [make_sample(i) for i in range(12)])
    recipe = _recipe(tmp_path, f"  tokenizer: {tiny_student}\n  validation_fraction: 0.25\n")

    def cli(*overrides: str) -> int:
        argv = ["-c", str(recipe), *overrides]
        monkeypatch.setattr(sys, "argv", [str(REPO / "r1distill" / "build" / "__main__.py"), *argv])
        return build.main(argv)

    caplog.set_level(logging.INFO, logger="r1distill")
    assert cli("build.rows_per_shard=4") == 0
    out = tmp_path / "run" / "build"
    before = (out / "manifest.json").read_text()
    assert len(list((out / "data").glob("train-*.parquet"))) == 3
    caplog.clear()
    assert cli("build.rows_per_shard=4") == 0
    assert "nothing to do" in caplog.text
    assert (out / "manifest.json").read_text() == before
    killed = out / "data" / ".train-00007-of-00009.parquet.x1y2.tmp"  # what a killed build leaves
    killed.write_bytes(b"half a parquet file")
    assert cli("build.validation_fraction=0.5") == 0
    assert not killed.exists()
    assert len(list((out / "data").glob("*.parquet"))) == 2  # stale shards of the first build are gone
    assert read_manifest(out)["counts"] == {"train": 6, "validation": 6}
    # The card names the recipe relative to the working directory, or by name: never a path of this machine.
    card = (out / "README.md").read_text()
    assert "python -m r1distill.build -c recipe.yaml build.validation_fraction=0.5" in card
    assert str(tmp_path) not in card


@pytest.mark.parametrize("case", ["empty", "missing_column", "no_tokenizer", "unfinished_filter", "bad_fraction"])
def test_cli_bad_input_exits_2_with_a_clear_message(tmp_path, case):
    kept = tmp_path / "run" / "filter"
    tokenizer, overrides = "bundled:smollm2", []
    if case == "empty":
        make_kept(kept, [])
        expect = [str(kept), "no usable kept samples", "loosen the filter policy"]
    elif case == "missing_column":
        make_kept(kept, [make_sample(1)])
        path = kept / "part-00000.jsonl"
        record = json.loads(path.read_text())
        del record["completion"]
        path.write_text(json.dumps(record) + "\n")
        write_manifest(kept, read_manifest(kept))  # the shard as its manifest records it: only the field is wrong
        expect = [f"{path}:1", "no field 'completion'", "run `r1distill filter`"]
    elif case == "no_tokenizer":
        make_kept(kept, [make_sample(1)])
        tokenizer = str(tmp_path / "no-such-student")
        expect = ["build.tokenizer", "no-such-student", "no such folder"]
    elif case == "unfinished_filter":
        make_kept(kept, [make_sample(1)])
        (kept / "manifest.json").unlink()
        expect = [str(kept), "no manifest.json", "Run it (again) first"]
    else:
        make_kept(kept, [make_sample(1)])
        overrides.append("build.validation_fraction=1.5")
        expect = ["build.validation_fraction", "[0, 1)", "1.5"]
    proc = _cli("-c", str(_recipe(tmp_path, f"  tokenizer: {tokenizer}\n")), *overrides, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("r1distill build: error:")
    for text in expect:
        assert text in line
    assert not (tmp_path / "run" / "build" / "manifest.json").exists()


BUILD_SNIPPET = """
build:
  tokenizer: bundled:smollm2        # the student's: lengths are counted and its chat template checked with it
  validation_fraction: 0.1          # share of prompts (not samples) held out
  seed: 0
  prompt_completion: true           # also write prompt/completion columns
  pretty_name: r1distill quickstart (SmolLM2-135M arithmetic)
  license: apache-2.0
"""
PUBLISH_SNIPPET = """
publish:                            # needs the network and a write token (HF_TOKEN or `hf auth login`)
  repo_id: your-name/r1distill-quickstart
  private: true
  revision: main
"""


def test_quickstart_recipe_sections_parse(tmp_path):
    """The `build:` and `publish:` YAML proposed for pipelines/quickstart.yaml is valid for these stages."""
    from r1distill.build.publish import PublishConfig
    from r1distill.core.config import load_recipe

    path = tmp_path / "quickstart.yaml"
    path.write_text((REPO / "pipelines" / "quickstart.yaml").read_text() + BUILD_SNIPPET + PUBLISH_SNIPPET)
    recipe = load_recipe(path)
    cfg = recipe.section("build", BuildConfig)
    assert cfg.tokenizer == "bundled:smollm2" and cfg.prompt_completion and cfg.validation_fraction == 0.1
    assert recipe.section("publish", PublishConfig).repo_id == "your-name/r1distill-quickstart"


def test_trl_sft_trainer_trains_on_the_think_block(tmp_path, tiny_student):
    """TRL's own dataset preparation (no training step): with `messages` + assistant_only_loss, and with the
    prompt/completion columns, the trained tokens are exactly the `<think>` block, the answer and the EOS token."""
    pytest.importorskip("trl")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    samples = [make_sample(i) for i in range(6)]
    out = tmp_path / "build"
    cfg = BuildConfig(tokenizer=str(tiny_student), validation_fraction=0.0, prompt_completion=True)
    build.run(cfg, make_kept(tmp_path / "kept", samples), out)
    train = load(out, tmp_path)["train"]
    tok = AutoTokenizer.from_pretrained(tiny_student)
    model = AutoModelForCausalLM.from_pretrained(tiny_student)
    for name, data in [("messages", train.remove_columns(["prompt", "completion"])), ("prompt/completion", train)]:
        args = SFTConfig(
            output_dir=str(tmp_path / "sft"), use_cpu=True, report_to=[], assistant_only_loss=name == "messages"
        )
        prepared = SFTTrainer(model=model, args=args, train_dataset=data, processing_class=tok).train_dataset
        for row, ex in zip(train, prepared, strict=True):
            trained = tok.decode([t for t in ex["labels"] if t != -100])
            assert trained.startswith(row["messages"][-1]["content"] + tok.eos_token), (name, trained)
