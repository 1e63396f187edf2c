"""The verify stage end to end on a small generate-like folder: verdicts, policy, manifest, resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from r1distill.core.config import ConfigError
from r1distill.core.records import Sample
from r1distill.core.stage import is_done
from r1distill.core.store import ShardWriter, StageError, iter_records, read_manifest, write_manifest
from r1distill.grading.sandbox import isolation_level
from r1distill.verify.stage import MathConfig, PolicyConfig, VerifyConfig, main, run

STDIN_REF = {"tests": [{"input": "2 3\n", "output": "5\n", "testtype": "stdin"}]}


def _sample(source, row, k, domain, reference, answer, finish="stop"):
    completion = f"<think>\nworking on it\n</think>\n\n{answer}" if answer is not None else "<think>\nhmm, 1+1"
    return Sample(
        f"{source}/{row}/{k}", source, str(row), k, domain, f"problem {row}",
        [{"role": "user", "content": f"problem {row}"}], reference, completion,
        {"finish_reason": finish, "teacher": "tiny"},
    )  # fmt: skip


SAMPLES = [
    # always solved
    _sample("m", 0, 0, "math", "\\frac{1}{2}", "\\boxed{0.5}"),
    _sample("m", 0, 1, "math", "\\frac{1}{2}", "The answer is 1/2."),
    _sample("m", 0, 2, "math", "\\frac{1}{2}", "\\boxed{\\frac12}"),
    # solved 2 of 3 (k=2 and k=1 correct, written out of order as generate does)
    _sample("m", 1, 2, "math", "Total: 7*6=42\n#### 42", "So \\boxed{42}"),
    _sample("m", 1, 0, "math", "Total: 7*6=42\n#### 42", "So \\boxed{41}"),
    _sample("m", 1, 1, "math", "Total: 7*6=42\n#### 42", "It is 42"),
    # never solved: one truncated, one without an answer
    _sample("m", 2, 0, "math", "3", None, finish="length"),
    _sample("m", 2, 1, "math", "3", "I give up."),
    # code: one right, one wrong
    _sample("c", 0, 0, "code", STDIN_REF, "```python\na, b = map(int, input().split())\nprint(a + b)\n```"),
    _sample("c", 0, 1, "code", STDIN_REF, "```python\na, b = map(int, input().split())\nprint(a * b)\n```"),
    # multiple choice
    _sample("s", 0, 0, "science", "B", "The answer is (B)."),
]
EXPECTED = {
    "m/0/0": "correct", "m/0/1": "correct", "m/0/2": "correct",
    "m/1/2": "correct", "m/1/0": "wrong_answer", "m/1/1": "correct",
    "m/2/0": "truncated", "m/2/1": "no_answer",
    "c/0/0": "correct", "c/0/1": "wrong_answer", "s/0/0": "correct",
}  # fmt: skip


def make_generate(folder: Path, samples=SAMPLES) -> Path:
    with ShardWriter(folder, rows_per_shard=4) as writer:
        for s in samples:
            writer.write(s.to_json())
    write_manifest(folder, {"stage": "generate", "counts": {"samples": len(samples)}})
    return folder


def _cfg(**policy) -> VerifyConfig:
    return VerifyConfig(policy=PolicyConfig(**policy), math=MathConfig(timeout_s=5), workers=2)


def _out(folder: Path) -> dict[str, dict]:
    records = list(iter_records(folder))
    assert len({r["id"] for r in records}) == len(records), "a sample was written twice"
    return {r["id"]: r for r in records}


def test_keep_correct_verdicts_and_manifest(tmp_path):
    gen = make_generate(tmp_path / "generate")
    manifest = run(_cfg(), gen, tmp_path / "verify")
    out = _out(tmp_path / "verify")
    assert set(out) == {i for i, reason in EXPECTED.items() if reason == "correct"}
    assert all(r["meta"]["verify"]["correct"] and r["meta"]["teacher"] == "tiny" for r in out.values())
    assert out["m/0/1"]["meta"]["verify"]["extracted"] == "1/2"
    assert out["c/0/0"]["meta"]["verify"]["isolation"]
    c, st = manifest["counts"], manifest["stats"]
    assert (c["samples"], c["correct"], c["kept"], c["prompts"]) == (11, 7, 7, 5)
    assert (c["prompts_always_solved"], c["prompts_never_solved"]) == (2, 1)  # m/0 and s/0; m/2
    assert st["by_reason"] == {"correct": 7, "wrong_answer": 2, "truncated": 1, "no_answer": 1}
    assert st["by_domain"]["code"] == {"samples": 2, "correct": 1, "kept": 1}
    assert st["isolation"] == {isolation_level(): 2}  # recorded per code run, counted in the manifest
    assert c["dropped"] == {"wrong_answer": 2, "truncated": 1, "no_answer": 1}
    assert manifest["stage"] == "verify" and manifest["files"] and not (tmp_path / "verify" / ".graded").exists()
    assert read_manifest(tmp_path / "verify") == manifest


def test_keep_all_with_max_correct_per_prompt(tmp_path):
    gen = make_generate(tmp_path / "generate")
    run(_cfg(keep="all", max_correct_per_prompt=1), gen, tmp_path / "verify")
    out = _out(tmp_path / "verify")
    assert {i: r["meta"]["verify"]["reason"] for i, r in out.items()} == {
        i: reason for i, reason in EXPECTED.items() if i not in ("m/0/1", "m/0/2", "m/1/2")
    }  # the correct samples with the smallest k survive: m/0/0 and m/1/1


def test_drop_always_and_never_solved_prompts(tmp_path):
    gen = make_generate(tmp_path / "generate")
    manifest = run(_cfg(keep="all", drop_always_solved=True, drop_never_solved=True), gen, tmp_path / "verify")
    assert {i.rsplit("/", 1)[0] for i in _out(tmp_path / "verify")} == {"m/1", "c/0"}
    assert manifest["counts"]["dropped"] == {"prompt_always_solved": 4, "prompt_never_solved": 2}


def test_done_run_is_skipped_and_force_redoes_it(tmp_path):
    gen = make_generate(tmp_path / "generate")
    out = tmp_path / "verify"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("verify:\n  policy: {keep: correct}\n  math: {timeout_s: 5}\n")
    argv = ["-c", str(recipe), "-i", str(gen), "-o", str(out)]
    assert main(argv) == 0
    first = read_manifest(out)
    assert is_done(out, VerifyConfig(policy=PolicyConfig(keep="correct")), gen)
    assert main(argv) == 0 and read_manifest(out) == first  # done: not even rewritten
    assert main([*argv, "--force"]) == 0
    assert read_manifest(out)["counts"]["graded_now"] == 11
    assert main([*argv, "verify.policy.keep=all"]) == 0  # another policy is another config: not "done"
    assert read_manifest(out)["counts"]["kept"] == 11
    recipe.write_text("verify:\n  policy: {keep: sometimes}\n")
    assert main(argv) == 2  # a user error: one line naming the field, exit 2


def test_user_errors_name_the_field_and_the_fix(tmp_path):
    with pytest.raises(StageError, match="generate stage did not finish"):
        run(_cfg(), tmp_path / "nothing", tmp_path / "verify")
    gen = make_generate(tmp_path / "generate")
    with pytest.raises(ConfigError, match=r"verify\.policy\.keep: 'some' is not one of: correct, all"):
        run(_cfg(keep="some"), gen, tmp_path / "verify")
    with pytest.raises(ConfigError, match="max_correct_per_prompt"):
        run(_cfg(max_correct_per_prompt=0), gen, tmp_path / "verify")
    bad = tmp_path / "bad"
    with ShardWriter(bad) as w:
        w.write({"id": "x/0/0", "domain": "math"})
    write_manifest(bad, {"stage": "generate"})
    with pytest.raises(StageError, match=r"bad/part-00000.jsonl:1: record 'x/0/0' has no 'reference' field"):
        run(_cfg(), bad, tmp_path / "verify2")


def test_resume_after_a_kill(tmp_path):
    """SIGKILL the CLI mid-grading: no manifest is left, and a rerun grades only the rest and ends complete."""
    slow = "```python\nimport time\ntime.sleep(0.4)\nprint(sum(map(int, input().split())))\n```"
    samples = [_sample("slow", i, 0, "code", STDIN_REF, slow) for i in range(12)] + SAMPLES
    gen = make_generate(tmp_path / "generate", samples)
    out = tmp_path / "verify"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("verify:\n  workers: 1\n  batch_size: 1\n  policy: {keep: all}\n")
    cmd = [sys.executable, "-m", "r1distill.verify", "-c", str(recipe), "-i", str(gen), "-o", str(out)]
    proc = subprocess.Popen(cmd, start_new_session=True, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        graded = sum(p.read_text().count("\n") for p in (out / ".graded").glob("part-*")) if out.exists() else 0
        if graded >= 3:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert graded >= 3 and read_manifest(out) is None
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    manifest = read_manifest(out)
    counts = manifest["counts"]
    assert counts["graded_before"] >= 3 and counts["graded_before"] + counts["graded_now"] == len(samples)
    got = _out(out)
    assert set(got) == {s.id for s in samples} and counts["kept"] == len(samples)
    assert all(got[f"slow/{i}/0"]["meta"]["verify"]["correct"] for i in range(12))
    assert {i: got[i]["meta"]["verify"]["reason"] for i in EXPECTED} == EXPECTED
    assert json.loads((out / "manifest.json").read_text())["files"][0]["rows"] == len(samples)
