"""Decontamination: MATH-500/AIME problems seeded verbatim and with numbers changed are caught, clean ones survive."""

import json
import re
from pathlib import Path

import pytest

from r1distill.filter.decontam import Benchmark, Decontaminator

BENCH = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"
pytestmark = pytest.mark.skipif(not (BENCH / "math500.jsonl").exists(), reason=f"benchmark files absent: {BENCH}")

CLEAN = [
    "A farmer has 17 sheep and buys 5 more each week. After how many weeks will he have more than 60 sheep?",
    "Let $f(x) = 3x^2 - 7x + 2$. Find the sum of the roots of $f(x) = 0$.",
    "How many ways can 6 distinct books be arranged on a shelf if two particular books must not be adjacent?",
    "Compute the remainder when $7^{2024}$ is divided by 13.",
    "A rectangle has perimeter 46 and diagonal 17. What is its area?",
    "Find all real $x$ such that $\\sqrt{x+5} + \\sqrt{x} = 5$.",
    "In triangle $PQR$, $PQ = 9$, $QR = 12$ and the angle at $Q$ is right. Find the length of the median from $P$.",
    "Evaluate $\\sum_{k=1}^{50} (2k-1)$.",
]


def change_numbers(text: str) -> str:
    """Every integer n becomes n + 3 (what a paraphrasing contaminator does with a benchmark problem)."""
    return re.sub(r"\d+", lambda m: str(int(m.group()) + 3), text)


@pytest.fixture(scope="module")
def decontaminator():
    benches = [Benchmark.load(BENCH / "math500.jsonl", "problem"), Benchmark.load(BENCH / "aime24.jsonl", "problem"),
               Benchmark.load(BENCH / "aime25.jsonl", "problem")]  # fmt: skip
    return Decontaminator(benches, ngram=8, min_overlap=0.5)


def load(name: str) -> list[str]:
    return [json.loads(line)["problem"] for line in (BENCH / name).read_text().splitlines()]


def test_verbatim_problems_are_caught(decontaminator):
    seeded = load("math500.jsonl")[:40:4] + load("aime24.jsonl")[:5] + load("aime25.jsonl")[:5]
    hits = [decontaminator.match(p) for p in seeded]
    assert all(hits), [p for p, h in zip(seeded, hits, strict=True) if not h]
    assert {h["benchmark"] for h in hits} == {"math500", "aime24", "aime25"}


def test_reformatted_and_embedded_problems_are_caught(decontaminator):
    aime = load("aime24.jsonl")[3]
    wrapped = (
        "Solve the following problem and put the answer in a box.\n\n"
        + aime.replace("$", "")
        + "\n\nThink step by step."
    )
    assert decontaminator.match(wrapped)["variant"] in ("verbatim", "numbers_masked")


def test_numbers_changed_are_caught_by_the_masked_variant(decontaminator):
    long_ones = [p for p in load("aime24.jsonl") + load("aime25.jsonl") if len(p.split()) >= 25][:10]
    changed = [change_numbers(p) for p in long_ones]
    hits = [decontaminator.match(p) for p in changed]
    assert all(hits), [p for p, h in zip(changed, hits, strict=True) if not h]
    assert any(h["variant"] == "numbers_masked" for h in hits)
    plain = Decontaminator([Benchmark.load(BENCH / "aime24.jsonl")], numbers_masked=False)
    assert sum(plain.match(p) is not None for p in changed[:5]) < 5  # without masking, some slip through


def test_clean_problems_survive(decontaminator):
    assert [p for p in CLEAN if decontaminator.match(p)] == []


def test_gsm8k_style_field_and_missing_file(tmp_path):
    from r1distill.core.store import StageError

    path = tmp_path / "bench.jsonl"
    path.write_text(
        json.dumps({"question": "Tom has 3 apples and buys 4 more apples at the store today. How many now?"}) + "\n"
    )
    d = Decontaminator([Benchmark.load(path, "problem,question")])
    assert d.match("Tom has 3 apples and buys 4 more apples at the store today. How many now?")["variant"] == "exact"
    with pytest.raises(StageError, match="no text field 'problem'"):
        Benchmark.load(path, "problem")
    with pytest.raises(StageError, match="benchmark file not found"):
        Benchmark.load(tmp_path / "nope.jsonl")
