"""repetition: each signal has a pass case and a drop case with its own reason."""

import random

from r1distill.filter.checks import build_check
from r1distill.testing.samples import sample


def prose(n_sentences: int, seed: int = 0) -> str:
    """Varied English-like sentences (no repeats), as a reasoning trace would be."""
    rng = random.Random(seed)
    words = "we the value of sum check term next so then compute apply factor equals prime even odd square".split()
    sentences = [" ".join(rng.choice(words) for _ in range(12)).capitalize() + f" {rng.randint(0, 10**6)}."
                 for _ in range(n_sentences)]  # fmt: skip
    return "\n\n".join(" ".join(sentences[i : i + 3]) for i in range(0, n_sentences, 3))


def reason(s, **params) -> str:
    return build_check("repetition", params)(s).reason


def test_varied_text_passes():
    assert reason(sample(reasoning=prose(120))) == "ok"


def test_short_texts_are_not_judged():
    assert reason(sample(reasoning="Wait.\n\nWait.\n\nWait.")) == "ok"


def test_loop_at_the_end_is_caught_by_compression():
    looped = prose(300) + "\n" + "Let me recompute the sum once more to be sure it is right. " * 400
    assert reason(sample(reasoning=looped)) == "loop_run"  # the exact detector runs first
    verdict = build_check("repetition", {"loops": False})(sample(reasoning=looped))
    assert verdict.reason == "compression_ratio"
    assert verdict.evidence["threshold"] == {"min_compression_ratio": 0.12}
    assert "Let me recompute the sum" in verdict.evidence["excerpt"]


def test_duplicated_paragraphs():
    text = prose(60) + "\n\n" + "\n\n".join(["So the total is 42 and we add the remaining seven terms carefully."] * 30)
    verdict = build_check("repetition", {"min_compression_ratio": 0.0, "loops": False})(sample(reasoning=text))
    assert verdict.reason == "dup_para_frac"
    ev = verdict.evidence
    assert ev["excerpt"] == "So the total is 42 and we add the remaining seven terms carefully."
    assert text[ev["offset"] :].startswith(ev["excerpt"]) and ev["offset"] > text.index(ev["excerpt"])


def test_duplicated_lines():
    body = prose(60).replace("\n\n", "\n")
    text = body + "\n" + "\n".join(["Checking the constraint again for the second case here."] * 40)
    params = {"min_compression_ratio": 0.0, "max_dup_para_frac": 1.0, "loops": False}
    assert reason(sample(reasoning=text), **params) == "dup_line_frac"


def test_repeated_ngrams():
    text = (
        prose(40) + " " + " ".join(f"then we try value {i} and it fails so we go back and try again" for i in range(60))
    )
    params = {"min_compression_ratio": 0.0, "max_dup_para_frac": 1.0, "max_dup_line_frac": 1.0, "ngram": 5}
    verdict = build_check("repetition", params)(sample(reasoning=text))
    assert verdict.reason == "dup_ngram_share"
    assert verdict.evidence["excerpt"].startswith("and it fails so we go back and try again then we try value 2 ")


def test_answer_is_checked_too():
    assert reason(sample(answer="The answer is 4. " * 200)) == "loop_run"
    assert reason(sample(answer="The answer is 4. " * 200), loops=False) == "compression_ratio"
    assert reason(sample(answer="The answer is 4. " * 200), check_answer=False) == "ok"


def test_short_sentence_loop_after_an_ordinary_reasoning():
    """The issue's case: 25 copies of one short sentence after 4,000 ordinary characters; the shares stay low."""
    text = prose(60)[:4000] + "\n\n" + "Therefore, the correct answer should be C. " * 25
    assert reason(sample(reasoning=text), loops=False) == "ok"  # what the share signals alone say
    verdict = build_check("repetition", {})(sample(reasoning=text))
    assert verdict.reason == "loop_run" and verdict.details["count"] == 25
    ev = verdict.evidence
    assert ev["unit"] == "Therefore, the correct answer should be C." and ev["count"] == 25
    assert ev["excerpt"].startswith("Therefore, the correct answer") and text[ev["offset"] :].startswith(ev["excerpt"])
    assert ev["threshold"] == {"min_repeats": 4, "min_run_chars": 40}


def test_loop_in_the_middle_with_varying_whitespace():
    block = "**Final Answer**\n\\boxed{819}"
    text = prose(30) + "\n\n" + "\n\n".join(block.replace("\n", " \n" if i % 2 else "\n") for i in range(8))
    text += "\n\n" + prose(30, seed=1)
    verdict = build_check("repetition", {})(sample(reasoning=text))
    assert verdict.reason == "loop_run" and verdict.details["count"] == 8, verdict
    assert verdict.evidence["unit"].startswith("**Final Answer**")


def test_tail_loop_without_sentence_boundaries():
    text = prose(30) + "\n\nso the values are " + "1,2," * 120  # one "word": only the tail check sees it
    verdict = build_check("repetition", {})(sample(reasoning=text))
    assert verdict.reason == "loop_run" and verdict.details["kind"] == "tail"
    assert verdict.evidence["unit"] in ("1,2,", "2,1,", ",1,2", ",2,1") and verdict.details["count"] >= 115
    # With spaces the words repeat: the word-level detector finds the same loop first.
    spaced = prose(30) + "\n\nso the values are " + "1, 2, " * 60
    assert build_check("repetition", {})(sample(reasoning=spaced)).details["kind"] == "units"


def test_three_repeats_of_a_sentence_are_not_a_loop():
    text = prose(30) + "\n\n" + "Let me double-check the arithmetic here once more. " * 3 + "\n\n" + prose(30, seed=2)
    assert reason(sample(reasoning=text)) == "ok"
