"""The registry, and the graders on reference solutions: references as answers score 100%, wrong answers 0%."""

from __future__ import annotations

import pytest

from r1distill.core.records import Sample
from r1distill.core.store import StageError
from r1distill.evaluate import benchmarks
from r1distill.grading.answer import reference_answer
from r1distill.grading.grader import Grader


def _sample(bench: str, domain: str, row: dict, answer_text: str) -> Sample:
    completion = f"<think>\n...\n</think>\n\n{answer_text}"
    return Sample(
        f"{bench}/{row['id']}/0",
        bench,
        row["id"],
        0,
        domain,
        row["problem"],
        [],
        row["answer"],
        completion,
        {"finish_reason": "stop"},
    )


def _math_samples(name: str, rows: list[dict], wrong: bool) -> list[Sample]:
    bench = benchmarks.get(name)
    out = []
    for r in rows:
        ans = "-987654.25" if wrong else reference_answer(r["answer"])
        out.append(_sample(name, bench.domain, r, f"The answer is \\boxed{{{ans}}}."))
    return out


@pytest.fixture(scope="module")
def grader():
    with Grader(workers=2) as g:
        yield g


def test_registry_has_the_brief_benchmarks():
    for name in ("aime24", "aime25", "amc23", "math500", "gsm8k", "gpqa_diamond", "livecodebench", "humaneval", "mbpp"):
        assert benchmarks.get(name).name == name
    with pytest.raises(StageError, match="unknown benchmark 'nope'"):
        benchmarks.get("nope")
    assert "\\boxed{}" in benchmarks.get("math500").prompt_template


def test_published_numbers_match_by_model_name():
    aime = benchmarks.get("aime24")
    assert benchmarks.published_for(aime, "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B") == 55.5
    assert benchmarks.published_for(aime, "/models/deepseek-r1-distill-llama-70b", cons=True) == 86.7
    assert benchmarks.published_for(benchmarks.get("math500"), "DeepSeek-R1-Distill-Qwen-1.5B") == 83.9
    assert benchmarks.published_for(aime, "bundled:smollm2") is None


def test_missing_local_file_is_a_clear_error(tmp_path):
    with pytest.raises(StageError, match="aime24.jsonl does not exist"):
        benchmarks.get("aime24").rows(tmp_path)


def test_builtin_arith_is_held_out_from_generate_default_seed():
    from r1distill.generate.problems import arithmetic

    rows = benchmarks.get("arith").rows(None)
    assert len(rows) == 32
    assert {r["problem"] for r in rows}.isdisjoint({r["problem"] for r in arithmetic(32, 0)})


@pytest.mark.parametrize(
    ("name", "limit", "expected_rows"),
    [("math500", None, 500), ("gsm8k", 300, 300), ("aime24", None, 30), ("aime25", None, 30), ("amc23", None, 40)],
)
def test_math_references_score_full_and_wrong_answers_zero(shared_dir, grader, name, limit, expected_rows):
    rows = benchmarks.get(name).rows(shared_dir / "benchmarks", limit)
    assert len(rows) == expected_rows
    right = grader.grade(_math_samples(name, rows, wrong=False))
    failures = [(r["id"], r["answer"], g.reason) for r, g in zip(rows, right, strict=True) if not g.correct]
    assert not failures, failures[:5]
    wrong = grader.grade(_math_samples(name, rows, wrong=True))
    assert not any(g.correct for g in wrong)


def test_gsm8k_reference_is_the_number_after_hashes(shared_dir):
    row = benchmarks.get("gsm8k").rows(shared_dir / "benchmarks", 1)[0]
    assert row["answer"].rstrip().endswith("#### 18") and reference_answer(row["answer"]) == "18"


def test_gpqa_converter_shuffles_deterministically_and_keeps_the_letter():
    raw = {
        "Question": "Which?",
        "Correct Answer": "right",
        "Incorrect Answer 1": "w1",
        "Incorrect Answer 2": "w2",
        "Incorrect Answer 3": "w3",
        "Record ID": "rec1",
    }
    row = benchmarks.get("gpqa_diamond").convert(0, raw)
    assert row == benchmarks.get("gpqa_diamond").convert(0, dict(raw))
    assert f"({row['answer']}) right" in row["problem"]


def test_gpqa_letter_grading(grader):
    row = {"id": "q", "problem": "Which?\n(A) x\n(B) y", "answer": "B"}
    grades = grader.grade(
        [
            _sample("gpqa_diamond", "science", row, "The answer is \\boxed{B}."),
            _sample("gpqa_diamond", "science", row, "The answer is \\boxed{A}."),
        ]
    )
    assert [g.correct for g in grades] == [True, False]


def test_code_reference_solutions_pass_and_stubs_fail(shared_dir, grader):
    mbpp = benchmarks.get("mbpp").rows(shared_dir / "benchmarks", 4)
    assert mbpp[0]["id"] == "11"  # the test split starts at task 11
    raw = {str(r["task_id"]): r for r in benchmarks._read_local(shared_dir / "benchmarks" / "mbpp.jsonl")}
    samples = [_sample("mbpp", "code", r, f"```python\n{raw[r['id']]['code']}\n```") for r in mbpp]
    stubs = [_sample("mbpp", "code", r, "```python\ndef nothing():\n    pass\n```") for r in mbpp]
    he = benchmarks.get("humaneval").rows(shared_dir / "benchmarks", 4)  # not there: the bundled copy
    canon = {r["task_id"].replace("/", "_"): r for r in benchmarks._read_local(benchmarks.HUMANEVAL_FILE)}
    for r in he:
        c = canon[r["id"]]
        samples.append(_sample("humaneval", "code", r, f"```python\n{c['canonical_solution']}\n```"))
        stubs.append(_sample("humaneval", "code", r, "```python\ndef nothing():\n    pass\n```"))
    grades = grader.grade(samples)
    assert [g.reason for g in grades] == ["correct"] * len(samples)
    assert not any(g.correct for g in grader.grade(stubs))


def test_livecodebench_references_grade_a_correct_program(shared_dir, grader):
    """LCB has no reference solutions; problem 0 (Codeforces "A. Short Sort") is solved here by hand."""
    rows = benchmarks.get("livecodebench").rows(shared_dir / "benchmarks", 1)
    assert rows[0]["answer"]["tests"][0]["testtype"] == "stdin"
    solution = (
        "t = int(input())\nfor _ in range(t):\n    s = input().strip()\n"
        "    print('YES' if sum(a != b for a, b in zip(s, 'abc')) <= 2 else 'NO')\n"
    )
    good = _sample("livecodebench", "code", rows[0], f"```python\n{solution}```")
    bad = _sample("livecodebench", "code", rows[0], "```python\nprint('YES')\n```")
    assert [g.reason for g in grader.grade([good, bad])] == ["correct", "wrong_answer"]
