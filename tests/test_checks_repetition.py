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
    verdict = build_check("repetition", {})(sample(reasoning=looped))
    assert verdict.reason == "compression_ratio"


def test_duplicated_paragraphs():
    text = prose(60) + "\n\n" + "\n\n".join(["So the total is 42 and we add the remaining seven terms carefully."] * 30)
    assert reason(sample(reasoning=text), min_compression_ratio=0.0) == "dup_para_frac"


def test_duplicated_lines():
    body = prose(60).replace("\n\n", "\n")
    text = body + "\n" + "\n".join(["Checking the constraint again for the second case here."] * 40)
    assert reason(sample(reasoning=text), min_compression_ratio=0.0, max_dup_para_frac=1.0) == "dup_line_frac"


def test_repeated_ngrams():
    text = (
        prose(40) + " " + " ".join(f"then we try value {i} and it fails so we go back and try again" for i in range(60))
    )
    params = {"min_compression_ratio": 0.0, "max_dup_para_frac": 1.0, "max_dup_line_frac": 1.0, "ngram": 5}
    assert reason(sample(reasoning=text), **params) == "dup_ngram_share"


def test_answer_is_checked_too():
    assert reason(sample(answer="The answer is 4. " * 200)) == "compression_ratio"
    assert reason(sample(answer="The answer is 4. " * 200), check_answer=False) == "ok"
