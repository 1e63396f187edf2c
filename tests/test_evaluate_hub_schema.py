"""The Hub loaders map each Hub dataset's own field names and types, without the network: a local
`datasets.Dataset` built with the Hub dataset's schema stands in for the download. The one fake is
`datasets.load_dataset` in the last test, at the boundary that cannot exist here (the Hub)."""

from __future__ import annotations

import datasets
import pytest

from r1distill.core.records import Sample
from r1distill.evaluate import benchmarks
from r1distill.grading.grader import Grader

S, I64 = datasets.Value("string"), datasets.Value("int64")

# name -> (Hub schema, one row in it, the gold answer a model would write in \boxed{})
HUB_ROWS = {
    "aime24": (  # HuggingFaceH4/aime_2024, split train
        {"id": I64, "problem": S, "solution": S, "answer": S, "url": S, "year": S},
        {"id": 60, "problem": "Find $x$ if $x+1=205$.", "solution": "...", "answer": "204", "url": "u", "year": "2024"},
        "204",
    ),
    "math500": (  # HuggingFaceH4/MATH-500, split test
        {"problem": S, "solution": S, "answer": S, "subject": S, "level": I64, "unique_id": S},
        {
            "problem": "Simplify $\\frac{2}{4}$.",
            "solution": "It is $\\boxed{\\frac12}$.",
            "answer": "\\frac{1}{2}",
            "subject": "Prealgebra",
            "level": 1,
            "unique_id": "test/prealgebra/1.json",
        },
        "0.5",
    ),
    "gsm8k": (  # openai/gsm8k, config main, split test
        {"question": S, "answer": S},
        {"question": "Janet has 16 eggs and eats 3. How many are left?", "answer": "16 - 3 = <<16-3=13>>13\n#### 13"},
        "13",
    ),
    "gpqa_diamond": (  # Idavidrein/gpqa, config gpqa_diamond, split train (a few of its 30-odd columns)
        {
            "Pre-Revision Question": S,
            "Question": S,
            "Correct Answer": S,
            "Incorrect Answer 1": S,
            "Incorrect Answer 2": S,
            "Incorrect Answer 3": S,
            "Explanation": S,
            "Record ID": S,
            "Subdomain": S,
        },
        {
            "Pre-Revision Question": "old",
            "Question": " Which particle is a lepton? ",
            "Correct Answer": "electron",
            "Incorrect Answer 1": "proton",
            "Incorrect Answer 2": "neutron",
            "Incorrect Answer 3": "pion",
            "Explanation": "...",
            "Record ID": "recABC",
            "Subdomain": "Physics",
        },
        None,  # the letter depends on the shuffle; found from the problem text below
    ),
}


def _hub_dataset(name: str) -> datasets.Dataset:
    features, row, _ = HUB_ROWS[name]
    return datasets.Dataset.from_list([row], features=datasets.Features(features))


def _graded(grader: Grader, bench: benchmarks.Benchmark, row: dict, answer: str) -> bool:
    sample = Sample(
        f"{bench.name}/{row['id']}/0",
        bench.name,
        row["id"],
        0,
        bench.domain,
        row["problem"],
        [],
        row["answer"],
        f"<think>\n...\n</think>\n\nThe answer is \\boxed{{{answer}}}.",
        {"finish_reason": "stop"},
    )
    return grader.grade([sample])[0].correct


@pytest.fixture(scope="module")
def grader():
    with Grader(workers=1) as g:
        yield g


@pytest.mark.parametrize("name", sorted(HUB_ROWS))
def test_hub_schema_rows_convert_and_their_gold_answer_grades_correct(name, grader):
    bench = benchmarks.get(name)
    assert bench.hub, f"{name} has no Hub id"
    [row] = bench.convert_rows(_hub_dataset(name))
    raw, gold = HUB_ROWS[name][1], HUB_ROWS[name][2]
    assert set(row) >= {"id", "problem", "answer"} and "/" not in row["id"]
    assert (raw.get("question") or raw.get("problem") or raw["Question"].strip()) in row["problem"]
    if name == "gpqa_diamond":
        assert row["id"] == "recABC" and f"({row['answer']}) electron" in row["problem"]
        gold = row["answer"]
        wrong = "ABCD".replace(gold, "")[0]
    else:
        wrong = "999999"
    assert _graded(grader, bench, row, gold) and not _graded(grader, bench, row, wrong)


def test_math500_unique_id_with_slashes_becomes_a_file_safe_id():
    [row] = benchmarks.get("math500").convert_rows(_hub_dataset("math500"))
    assert row["id"] == "test_prealgebra_1.json"


def test_mbpp_hub_split_keeps_the_test_range_and_its_test_list():
    features = datasets.Features(
        {
            "task_id": datasets.Value("int32"),
            "text": S,
            "code": S,
            "test_list": datasets.Sequence(S),
            "test_setup_code": S,
            "challenge_test_list": datasets.Sequence(S),
        }
    )
    rows = [
        {
            "task_id": t,
            "text": f"Write a function add{t}(a, b).",
            "code": f"def add{t}(a, b):\n    return a + b",
            "test_list": [f"assert add{t}(1, 2) == 3", f"assert add{t}(2, 2) == 4"],
            "test_setup_code": "",
            "challenge_test_list": [],
        }
        for t in (10, 11, 510, 511)
    ]
    converted = benchmarks.get("mbpp").convert_rows(datasets.Dataset.from_list(rows, features=features))
    assert [r["id"] for r in converted] == ["11", "510"]  # the usual test split: task_id 11-510
    assert "assert add11(1, 2) == 3" in converted[0]["problem"]
    assert converted[0]["answer"] == {"test_code": "assert add11(1, 2) == 3\nassert add11(2, 2) == 4", "setup_code": ""}


def test_no_data_root_loads_the_hub_id_subset_and_split(monkeypatch):
    calls = []

    def load_dataset(path, name=None, split=None):  # the Hub is out of reach here: answer with the local dataset
        calls.append((path, name, split))
        return _hub_dataset("gsm8k")

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    rows = benchmarks.get("gsm8k").rows(None, limit=1)
    assert calls == [("openai/gsm8k", "main", "test")]
    assert rows == [{"id": "0", "problem": HUB_ROWS["gsm8k"][1]["question"], "answer": HUB_ROWS["gsm8k"][1]["answer"]}]
