import numpy as np
import pytest

from r1distill.core.store import ShardWriter, iter_records, recover
from r1distill.generate.logprobs import LogprobStore, bytes_per_token, decode, encode, read


def test_encode_decode_roundtrip_and_size():
    top = [[(5, -0.1), (7, -2.5), (9, -3.0)], [(1, -0.01)]]  # the second step came back with fewer than k
    buf = encode([5, 1], [-0.1, -0.01], top, k=3)
    assert len(buf) == 2 * bytes_per_token(3) == 2 * 26
    lp = decode(buf, 2, 3)
    assert lp.token_ids.tolist() == [5, 1] and lp.k == 3
    assert np.allclose(lp.token_lp, [-0.1, -0.01])
    assert lp.top_ids.tolist() == [[5, 7, 9], [1, -1, -1]]
    assert np.isneginf(lp.top_lp[1, 1]) and abs(float(lp.top_lp[0, 1]) + 2.5) < 1e-2


def test_sidecar_survives_a_kill_and_points_stay_valid(tmp_path):
    w = ShardWriter(tmp_path)
    refs = []
    for i in range(3):
        blob = encode([i, i + 1], [-0.5, -0.25], [[(i, -0.5)], [(i + 1, -0.25)]], k=1)
        file, offset = w.write_blob(blob)
        refs.append({"file": file, "offset": offset, "tokens": 2, "k": 1})
        w.write({"id": f"s{i}", "meta": {"logprobs": refs[-1]}})
    w.write_blob(b"\x00" * 7)  # a blob whose record never made it to disk (killed in between)
    # simulate SIGKILL: no close(), then recovery by the next run
    recover(tmp_path)
    records = list(iter_records(tmp_path))
    assert [r["id"] for r in records] == ["s0", "s1", "s2"]
    assert read(tmp_path, records[2]["meta"]["logprobs"]).token_ids.tolist() == [2, 3]
    store = LogprobStore(tmp_path)
    assert "s1" in store and store["s1"].token_ids.tolist() == [1, 2]


@pytest.mark.slow
def test_generate_captures_teacher_logprobs(tmp_path, vllm_engine):
    from r1distill.generate.prompts import SourceConfig
    from r1distill.generate.stage import GenerateConfig, run

    cfg = GenerateConfig(
        sources=[SourceConfig(name="a", builtin="arithmetic", count=3)],
        n=2,
        logprobs=5,
        sampling={"max_tokens": 20},
        rows_per_shard=4,
    )
    run(cfg, None, tmp_path, engine=vllm_engine)
    store = LogprobStore(tmp_path)
    rows = list(iter_records(tmp_path))
    assert len(store.index) == len(rows) == 6
    for r in rows:
        lp = store[r["id"]]
        assert lp.k == 5 and len(lp.token_ids) == r["meta"]["completion_tokens"]
        text = vllm_engine.tokenizer.decode(lp.token_ids.tolist(), skip_special_tokens=True)
        assert r["completion"] == "<think>\n" + text  # the sidecar holds exactly the sampled tokens
        top = lp.top_lp.astype(np.float32)
        assert np.all(np.diff(top, axis=1) <= 1e-3)  # best first
        assert np.all(lp.token_lp <= top[:, 0] + 1e-2)  # nothing beats the top-1
        assert np.all(lp.token_lp <= 0) and np.all(lp.top_ids[:, 0] >= 0)
