"""Pass-rate prompt selection: the window on constructed verdicts; a real run (vLLM + grader) that reruns reuse."""

from __future__ import annotations

import doctest
import json
import time

import pytest

from r1distill.core.config import ConfigError, from_dict
from r1distill.core.store import StageError, iter_records
from r1distill.generate.prompts import Prompt, SourceConfig, load_prompts
from r1distill.generate.stage import GenerateConfig
from r1distill.grading.grader import Grader
from r1distill.train import selection

# Five prompts, four samples each: 0, 1, 2, 3 and 4 of 4 correct.
VERDICTS = [(f"s/{n}", k < n) for n in range(5) for k in range(4)]


def test_pass_rates_and_window_on_constructed_verdicts():
    rates = selection.pass_rates(VERDICTS)
    assert rates == {f"s/{n}": (n, 4) for n in range(5)}
    rows = selection.select(rates, 0.2, 0.8)
    assert [r["pass_rate"] for r in rows] == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert [r["id"] for r in rows if r["kept"]] == ["s/1", "s/2", "s/3"]  # never and always solved are dropped
    # the bounds are inclusive
    assert [r["id"] for r in selection.select(rates, 0.25, 0.75) if r["kept"]] == ["s/1", "s/2", "s/3"]
    assert [r["id"] for r in selection.select(rates, 0.3, 0.7) if r["kept"]] == ["s/2"]
    counts = selection.summary(rows)
    assert (counts["measured"], counts["kept"], counts["always_solved"], counts["never_solved"]) == (5, 3, 1, 1)
    assert counts["mean_pass_rate"] == 0.5


def test_kept_prompts_keep_source_order_and_an_empty_window_is_an_error():
    prompts = [Prompt("s", str(n), f"problem {n}", "1", "math") for n in (3, 0, 2, 1, 4)]
    rows = selection.select(selection.pass_rates(VERDICTS), 0.2, 0.8)
    assert [p.row for p in selection.kept_prompts(prompts, rows)] == ["3", "2", "1"]
    with pytest.raises(StageError, match=r"no prompt has a pass rate in the window \(rates from 0.00 to 1.00\)"):
        selection.kept_prompts(prompts, selection.select(selection.pass_rates(VERDICTS), 0.4, 0.45))


def test_selection_settings_are_checked():
    with pytest.raises(ConfigError, match="need 0 <= low <= high <= 1, got low=0.9, high=0.1"):
        from_dict(selection.SelectionConfig, {"low": 0.9, "high": 0.1}, "rl.selection")
    with pytest.raises(ConfigError, match="rl.selection.k: expected int"):
        from_dict(selection.SelectionConfig, {"k": "eight"}, "rl.selection")


def test_module_doctests_pass():
    result = doctest.testmod(selection)
    assert result.attempted >= 2 and result.failed == 0


@pytest.mark.slow
def test_selection_samples_grades_and_a_rerun_reuses_it(tmp_path, teacher_dir, vllm_engine):
    """The bundled SmolLM2 as the student on four arithmetic prompts, k=3: pass rates from the real grader."""
    sources = [SourceConfig(name="arith", builtin="arithmetic", count=4, seed=3)]
    gen = GenerateConfig(
        sources=sources,
        system_prompt="Think inside <think> and </think>, then give the answer as \\boxed{N}.",
        prefill="<think>\n",
    )
    sel = selection.SelectionConfig(k=3, low=0.0, high=0.5, sampling={"max_tokens": 48, "temperature": 0.8})
    prompts = load_prompts(sources)
    grading = {"lenient_think": True}
    with Grader(workers=2, lenient_think=True) as grader:
        rows = selection.run(sel, gen, str(teacher_dir), prompts, tmp_path, grader, grading, engine=vllm_engine)
        samples = list(iter_records(tmp_path / selection.SAMPLES))
        assert len(samples) == 12 and {s["k"] for s in samples} == {0, 1, 2}
        assert all(s["completion"].startswith("<think>\n") for s in samples)
        # the pass rates are the grader's verdicts on those samples, counted per prompt
        grades = grader.grade(samples)
        pairs = zip(samples, grades, strict=True)
        expected = selection.pass_rates((f"{s['source']}/{s['row']}", g.correct) for s, g in pairs)
        assert {r["id"]: (r["passed"], r["sampled"]) for r in rows} == expected
        assert [r["kept"] for r in rows] == [r["pass_rate"] <= 0.5 for r in rows]
        saved = [json.loads(line) for line in (tmp_path / selection.FILE).read_text().splitlines()]
        assert saved == rows

        # same settings: the file is reused (no engine given, none started)
        t0 = time.monotonic()
        again = selection.run(sel, gen, str(teacher_dir), prompts, tmp_path, grader, grading)
        assert again == rows and time.monotonic() - t0 < 5
        # another window: re-graded from the samples already on disk, again without an engine
        wider = selection.SelectionConfig(k=3, low=0.0, high=1.0, sampling=sel.sampling)
        rows_all = selection.run(wider, gen, str(teacher_dir), prompts, tmp_path, grader, grading)
        assert all(r["kept"] for r in rows_all) and len(list(iter_records(tmp_path / selection.SAMPLES))) == 12
