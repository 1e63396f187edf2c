"""generate on a local Ray cluster through Ray Data's vLLM processor (CPU): same ids as the in-process engine,
streamed into the same shards, with logprobs; and resume after a partial run."""

import dataclasses

import pytest

from r1distill.core.store import iter_records
from r1distill.generate.logprobs import LogprobStore
from r1distill.generate.prompts import SourceConfig
from r1distill.generate.stage import GenerateConfig, run

pytestmark = pytest.mark.slow

RAY = {
    "init": {"num_cpus": 2},
    "placement_group_config": {"bundles": [{"CPU": 1}]},  # the default asks for a GPU and waits forever
    "batch_size": 4,
}


def test_ray_data_engine_matches_in_process_ids(tmp_path, vllm_engine, monkeypatch):
    ray = pytest.importorskip("ray")
    from r1distill.generate.engines import ray_data

    monkeypatch.setattr(ray_data, "WINDOW", 3)  # the second run's 4 requests reach Ray as two windows, one dataset
    src = [SourceConfig(name="arith", builtin="arithmetic", count=5)]
    cfg = GenerateConfig(
        sources=src,
        n=2,
        sampling={"max_tokens": 12},
        logprobs=2,
        engine="ray",
        ray=RAY,
        vllm={"dtype": "bfloat16", "max_model_len": 512, "enforce_eager": True},
    )
    try:
        # a partial first run (3 prompts), then the full set: only the missing ones go to Ray
        first = run(dataclasses.replace(cfg, limit=3), None, tmp_path / "ray")
        assert first["counts"]["samples"] == 6
        manifest = run(cfg, None, tmp_path / "ray")
    finally:
        ray.shutdown()
    assert manifest["last_run"]["samples"] == 4
    local = dataclasses.replace(cfg, engine="vllm", ray=None)
    run(local, None, tmp_path / "local", engine=vllm_engine)
    ray_rows = list(iter_records(tmp_path / "ray"))
    assert sorted(r["id"] for r in ray_rows) == sorted(r["id"] for r in iter_records(tmp_path / "local"))
    assert len(ray_rows) == 10
    store = LogprobStore(tmp_path / "ray")
    for r in ray_rows:
        assert r["completion"].startswith("<think>\n") and r["meta"]["finish_reason"] in ("stop", "length")
        assert r["meta"]["finish_reason_inferred"] is True and r["meta"]["teacher"]["engine"] == "ray"
        assert len(store[r["id"]].token_ids) == r["meta"]["completion_tokens"] > 0
