"""The policy on real DeepSeek-R1 outputs (arena-hard v2.0): ordinary output passes, planted defects are caught.

A check that drops much of a strong teacher's ordinary output is miscalibrated; one that misses a planted defect
is blind. Both are tested here on the 51 real R1 traces in ../shared/data/r1_real/.
"""

import json
import re
from pathlib import Path

import pytest

from r1distill.core.records import Sample
from r1distill.core.store import ShardWriter, iter_records, write_manifest
from r1distill.filter import stage as filter_stage
from r1distill.filter.checks.policy import load_policy

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "r1_real" / "arena_hard_r1.jsonl"
pytestmark = pytest.mark.skipif(not DATA.exists(), reason=f"real R1 outputs absent: {DATA}")

# The file's `source` is the same for every row (the answer file's path); arena-hard's category (coding, math,
# creative_writing) was assigned by reading each prompt. Everything not listed is coding.
MATH = {"0275", "2b3f", "2ed9", "317e", "322a", "335c", "6c0f", "9998", "99f5", "9a80", "9af1", "9b3f", "9bc2",
        "a4fb", "e8f2"}  # fmt: skip
WRITING = {"2b95", "2ec8", "2fe3", "3054", "3083", "319c", "6b78", "6b81", "98df", "9b24", "9c88", "e5e4", "e6d7",
           "e7df", "e8ba", "e9f4"}  # fmt: skip
# Rejection sampling needs verify's verdicts, which these rows do not have.
NO_VERIFY = {"correct": False}


def domain_of(uid: str) -> str:
    return "math" if uid[:4] in MATH else "writing" if uid[:4] in WRITING else "code"


def real_samples() -> list[Sample]:
    out = []
    for line in DATA.read_text(encoding="utf-8").splitlines():
        r = json.loads(line)
        out.append(
            Sample(
                id=f"arena/{r['id']}/0",
                source="arena",
                row=r["id"],
                k=0,
                domain=domain_of(r["id"]),
                problem=r["prompt"],
                messages=[{"role": "user", "content": r["prompt"]}],
                reference=None,
                completion="<think>\n" + r["reasoning"] + "\n</think>\n\n" + r["answer"],
                meta={"finish_reason": "stop"},
            )
        )
    return out


@pytest.fixture(scope="module")
def samples() -> list[Sample]:
    s = real_samples()
    assert len(s) == 51 and sum(x.domain == "math" for x in s) == 15 and sum(x.domain == "writing" for x in s) == 16
    return s


def drops(policy, samples) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for s in samples:
        check, verdict = policy(s)
        if check is not None:
            out.setdefault(f"{check}:{verdict.reason}", []).append(s.row[:8])
    return out


def test_r1_policy_keeps_ordinary_r1_output(samples):
    found = drops(load_policy("filters/r1.yaml", NO_VERIFY), samples)
    # Read and judged right: a Japanese math answer that opens with the English heading "Step-by-Step Explanation".
    assert found == {"language_mix:language_mix": ["9b3f5e14"]}, found


def test_strict_policy_is_stricter_but_not_destructive(samples):
    found = drops(load_policy("filters/strict.yaml", NO_VERIFY), samples)
    assert found == {
        # R1's own paragraphs of 2,100-2,600 characters: strict's 2,000 limit is a deliberate choice.
        "long_paragraph:long_paragraph": ["0775b8a6", "335c92ca", "9a8048b6"],
        # English thinking about the Vietnamese prompts is what strict exists to drop.
        "language_mix:language_mismatch": ["2ed954f0", "e6d74090"],
        "language_mix:language_mix": ["9b3f5e14"],
    }, found


def english(samples, domain=None) -> list[Sample]:
    """Samples whose prompt and completion are English (no Cyrillic/CJK, not the Vietnamese prompts)."""
    non_english = re.compile(r"[\u0400-\u04ff\u3040-\u9fff\uac00-\ud7af]|Thơ|Viết|CÁCH")
    return [
        s
        for s in samples
        if (domain is None or s.domain == domain) and not non_english.search(s.problem + s.completion)
    ]


def plant(s: Sample, reasoning: str, **meta) -> Sample:
    answer = s.answer
    return Sample(
        **{**s.__dict__, "completion": f"<think>\n{reasoning}\n</think>\n\n{answer}", "meta": {**s.meta, **meta}}
    )


def paragraphs(s: Sample) -> list[str]:
    return s.reasoning.split("\n\n")


def test_planted_defects_are_caught(samples):
    policy = load_policy("filters/r1.yaml", NO_VERIFY)
    en = english(samples)
    math = english(samples, "math")
    assert len(en) >= 30 and len(math) >= 8

    def reasons(planted):
        return [policy(s)[1].reason for s in planted]

    # Chinese sentences injected into an English trace, at a paragraph boundary and inside a paragraph.
    zh = [
        plant(s, "\n\n".join(p[:2] + ["我们需要重新检查这个结果是否正确。"] + p[2:]))
        for s in en
        for p in [paragraphs(s)]
    ]
    assert reasons(zh) == ["language_mix"] * len(en)
    zh_inline = [plant(s, s.reasoning.replace(". ", "，所以 ", 1)) for s in en]
    assert reasons(zh_inline) == ["language_mix"] * len(en)  # two Han characters are enough
    # An English sentence injected into Chinese, Japanese and Russian traces. 045a's prompt is C code (keywords,
    # mojibake comments) with one Chinese request: its code does not license English prose in the reasoning.
    non_en = [s for s in samples if re.search(r"[\u0400-\u04ff\u3040-\u9fff]", s.problem)]
    non_en = [s for s in non_en if s.row[:4] != "9b3f"]
    assert len(non_en) == 10 and reasons(non_en) == ["ok"] * 10
    slip = "Wait, let me double check this calculation again before answering."
    en_in = [plant(s, "\n\n".join(p[:2] + [slip] + p[2:])) for s in non_en for p in [paragraphs(s)]]
    assert reasons(en_in) == ["language_mix"] * 10
    assert all(slip in policy(s)[1].evidence["excerpt"] for s in en_in)
    # A code block pasted into a math trace.
    code = (
        "```python\nfrom itertools import product\ncount = 0\n"
        "for a, b in product(range(10), repeat=2):\n    count += a * b\nprint(count)\n```"
    )
    pasted = [
        plant(s, "\n\n".join(p[:3] + ["Let me verify numerically.\n" + code] + p[3:]))
        for s in math
        for p in [paragraphs(s)]
    ]
    assert reasons(pasted) == ["code_block"] * len(math)

    # A paragraph that loops until the token limit ran out (finish reason "stop" to test the loop detector alone).
    def loop(s: Sample) -> str:
        para = max(paragraphs(s)[-4:], key=len)
        times = max(len(s.reasoning) // 2, 8000) // len(para) + 2
        return s.reasoning + ("\n\n" + para) * times

    looped = [plant(s, loop(s)) for s in en]
    assert reasons(looped) == ["loop_run"] * len(en)
    # Truncation: cut mid-reasoning, with and without the engine's finish reason.
    cut = [Sample(**{**s.__dict__, "completion": s.completion[: len(s.completion) // 3]}) for s in en]
    assert reasons(cut) == ["truncated"] * len(en)
    cut_len = [plant(s, s.reasoning, finish_reason="length") for s in en]
    assert reasons(cut_len) == ["truncated"] * len(en)
    # A wall of text: three paragraphs glued into one, four times over.
    wall = [plant(s, " ".join([s.reasoning.replace("\n\n", " ")] * 2)) for s in en if len(s.reasoning) > 1600]
    assert reasons(wall) == ["long_paragraph"] * len(wall)


def test_filter_stage_report_on_real_outputs(tmp_path, samples):
    inp, out = tmp_path / "in", tmp_path / "out"
    with ShardWriter(inp) as w:
        for s in samples + [samples[0]]:  # one exact duplicate
            w.write(s.to_json())
    write_manifest(inp, {"stage": "generate"})
    bench = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "math500.jsonl"
    cfg = filter_stage.Config(overrides=NO_VERIFY)
    if bench.exists():
        cfg.decontam.benchmarks = [filter_stage.BenchmarkFile(str(bench))]
    manifest = filter_stage.run(cfg, inp, out)
    assert manifest["counts"] == {"in": 52, "kept": 50, "rejected": 2}
    assert manifest["reasons"] == {"language_mix": 1, "duplicate_completion": 1}
    assert len(list(iter_records(out))) == 50
    assert "| language_mix | language_mix | 1 |" in (out / "report.md").read_text()


SHORT = {"en": "Therefore, the correct answer should be C.", "zh": "因此，正确答案应该是C。",
         "ja": "したがって、正しい答えはCです。", "ru": "Следовательно, правильный ответ C."}  # fmt: skip
FINAL = {"en": "**Final Answer**", "zh": "**最终答案**", "ja": "**最終回答**", "ru": "**Окончательный ответ**"}


def lang_of(s: Sample) -> str:
    text = s.reasoning
    lang = ("ja" if re.search(r"[\u3040-\u30ff]", text) else "zh" if re.search(r"[\u4e00-\u9fff]", text)
            else "ru" if re.search(r"[\u0400-\u04ff]", text) else "en")  # fmt: skip
    return lang


def short_sentence(s: Sample) -> str:
    """The loop's sentence in the trace's own language (an English one in a Chinese trace is language_mix)."""
    return SHORT[lang_of(s)]


def loops(s: Sample) -> dict[str, str]:
    """The loops long-reasoning models fall into, planted in a real trace: a short sentence, a paragraph and a
    two-paragraph block, repeated back to back at the end (until the token limit) or in the middle (it recovered)."""
    p, short = paragraphs(s), short_sentence(s)
    para = max(p[1:-1] or p, key=len)[:600]
    pair = "\n\n".join(p[-3:-1]) if len(p) > 3 else para + "\n\nWait, let me check that again."
    mid = len(p) // 2
    return {
        "short_end": s.reasoning + "\n\n" + " ".join([short] * 25),
        "short_lines_end": s.reasoning + "\n\n" + "\n".join([short] * 12),
        "final_answer_end": s.reasoning + "\n\n" + "\n\n".join([FINAL[lang_of(s)] + "\n\\boxed{819}"] * 10),
        "paragraph_end": s.reasoning + ("\n\n" + para) * 6,
        "block_end": s.reasoning + ("\n\n" + pair) * 5,
        "short_mid": "\n\n".join(p[:mid] + [" ".join([short] * 8)] + p[mid:]),
        "paragraph_mid": "\n\n".join(p[:mid] + [para] * 5 + p[mid:]),
        "block_mid": "\n\n".join(p[:mid] + [pair] * 4 + p[mid:]),
    }


def test_planted_loops_are_caught_with_their_evidence(samples):
    """Every real trace, each loop kind: dropped as `loop_run`, the evidence holding the planted unit. (On main,
    about one in five of these was kept: the repeated unit is a small share of a long trace.)"""
    policy = load_policy("filters/r1.yaml", NO_VERIFY)
    missed = []
    for s in samples:
        base_check, base = policy(s)
        for kind, reasoning in loops(s).items():
            check, verdict = policy(plant(s, reasoning))
            if base_check is not None and check == base_check and verdict.reason == base.reason:
                continue  # already dropped before the loop check runs (9b3f: language_mix)
            planted = reasoning[len(s.reasoning) :] if kind.endswith("_end") else None
            ev = verdict.evidence or {}
            ok = (
                verdict.reason == "loop_run"
                and ev.get("part") == "reasoning"
                and ev["count"] >= 4
                and reasoning[ev["offset"] :].startswith(ev["excerpt"])
                and (planted is None or ev["unit"].removesuffix("...") in planted)
                and (short_sentence(s) in ev["excerpt"] if kind.startswith("short") else True)
            )
            if not ok:
                missed.append((s.row[:4], kind, verdict.reason, ev.get("unit", "")[:40]))
    assert not missed, missed


def test_chinese_inside_japanese_is_caught(samples):
    """A Han-only sentence that reads as Chinese (我们, 这个, 是) inside the real Japanese traces; the traces' own
    kanji-only sentences stay Japanese."""
    policy = load_policy("filters/r1.yaml", NO_VERIFY)
    ja = [s for s in samples if re.search(r"[\u3040-\u30ff]", s.problem)]
    assert [s.row[:4] for s in ja] == ["317e", "9b3f"]
    for zh in ("我们需要重新检查这个结果是否正确。", "所以这个概率是对的。"):
        for s in ja:
            p = paragraphs(s)
            check, verdict = policy(plant(s, "\n\n".join(p[:2] + [zh] + p[2:])))
            assert (check, verdict.reason) == ("language_mix", "language_mix"), (s.row, verdict)
            assert verdict.evidence["part"] == "reasoning" and verdict.evidence["excerpt"].startswith(zh)
    # Japanese written in kanji alone is not Chinese.
    s = ja[0]
    assert policy(plant(s, s.reasoning + "\n\n結論。確率計算完了。"))[1].reason == "ok"


def test_real_drop_shows_its_evidence(samples):
    """The one real drop (9b3f's Japanese answer opening with an English heading) names the heading."""
    policy = load_policy("filters/r1.yaml", NO_VERIFY)
    s = next(x for x in samples if x.row.startswith("9b3f"))
    check, verdict = policy(s)
    ev = verdict.evidence
    assert ev["part"] == "answer" and "Step-by-Step Explanation" in ev["excerpt"]
    assert s.answer[ev["offset"] :].startswith(ev["excerpt"]) and ev["threshold"]["max_foreign_segments"] == 0
