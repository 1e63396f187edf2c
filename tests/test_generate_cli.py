"""`python -m r1distill.generate` without a recipe, as users of open-r1 or SkyThought call it."""

import json
import subprocess
import sys

import pytest

from r1distill.core.store import iter_records, read_manifest


def generate(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "r1distill.generate", *args], capture_output=True, text=True, timeout=timeout
    )


def test_help_reads_as_flags_not_recipe_keys():
    proc = generate("--help")
    assert proc.returncode == 0
    for flag in ("--model MODEL", "--dataset PATH|HUB_ID", "--problem-field FIELD", "--n N", "--max-tokens N"):
        assert flag in proc.stdout
    assert "FLAG_" not in proc.stdout


@pytest.mark.parametrize(
    "args, expected",
    [
        ((), "give --config RECIPE, or --dataset and --output"),
        (("--dataset", "missing.jsonl", "-o", "x"), "--dataset missing.jsonl: no such file"),
        (("--dataset", "not a path or id", "-o", "x"), "not a Hub dataset id"),
    ],
)
def test_missing_source_is_one_line(tmp_path, args, expected):
    proc = generate(*args)
    assert proc.returncode == 2 and expected in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_generate_from_flags_alone(tmp_path):
    data = tmp_path / "qs.jsonl"
    rows = [{"question": f"What is {i} + {i}?", "answer": str(2 * i), "uid": f"p{i}"} for i in range(3)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    proc = generate(
        "--model", "bundled:smollm2", "--dataset", str(data), "--problem-field", "question", "--id-field", "uid",
        "--n", "2", "--max-tokens", "8", "--output", str(out),
        "generate.vllm.max_model_len=512", "generate.vllm.enforce_eager=true",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = read_manifest(out)
    assert manifest["counts"] == {"prompts": 3, "n": 2, "samples": 6}
    assert manifest["sampling"]["max_tokens"] == 8 and manifest["sampling"]["temperature"] == 0.6  # R1's default
    records = list(iter_records(out))
    assert {r["id"] for r in records} == {f"qs/p{i}/{k}" for i in range(3) for k in range(2)}
    by_row = {r["row"]: r for r in records}
    assert by_row["p1"]["problem"] == "What is 1 + 1?" and by_row["p1"]["reference"] == "2"
    assert "\\boxed{}" in by_row["p1"]["messages"][-1]["content"]  # R1's prompt template
