"""MinHash LSH dedup: exact and near duplicates found, different texts kept, first occurrence wins."""

import random

import numpy as np

from r1distill.filter.dedup import Deduplicator, LSHIndex, MinHasher, exact_key, lsh_params


def text(seed: int, n: int = 200) -> str:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(2000)]
    return " ".join(rng.choice(vocab) for _ in range(n))


def edit(t: str, frac: float, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = t.split()
    for i in rng.sample(range(len(words)), int(frac * len(words))):
        words[i] = "changed"
    return " ".join(words)


def jaccard_estimate(h: MinHasher, a: str, b: str) -> float:
    return float(np.mean(h.signature(a) == h.signature(b)))


def test_exact_key_ignores_case_and_spacing():
    assert exact_key("Hello,  World!") == exact_key("hello world")
    assert exact_key("hello world") != exact_key("hello there")


def test_signature_is_deterministic_and_estimates_jaccard():
    h = MinHasher(num_perm=128, ngram=3)
    a = text(1)
    assert np.array_equal(h.signature(a), MinHasher(num_perm=128, ngram=3).signature(a))
    assert jaccard_estimate(h, a, edit(a, 0.01)) > 0.85
    assert jaccard_estimate(h, a, text(2)) < 0.1


def test_lsh_params_center_on_threshold():
    bands, rows = lsh_params(0.8, 128)
    assert bands * rows <= 128 and abs((1 / bands) ** (1 / rows) - 0.8) < 0.05


def test_near_duplicates_found_distinct_kept():
    h = MinHasher(num_perm=128, ngram=3)
    index = LSHIndex(0.8, 128)
    base = [text(i) for i in range(50)]
    assert all(index.add_or_match(i, h.signature(t)) is None for i, t in enumerate(base))
    near = edit(base[7], 0.01, seed=3)
    match = index.add_or_match("near", h.signature(near))
    assert match is not None and match[0] == 7
    assert index.add_or_match("far", h.signature(edit(base[7], 0.5))) is None


def test_deduplicator_first_wins():
    h = MinHasher(num_perm=64, ngram=3)
    d = Deduplicator(near=True, threshold=0.8, num_perm=64)
    a = text(5)
    assert d.check("a", exact_key(a), h.signature(a)) is None
    assert d.check("a2", exact_key(a.upper()), h.signature(a.upper()))[:2] == ("duplicate", "a")
    assert d.check("a3", exact_key(edit(a, 0.01)), h.signature(edit(a, 0.01)))[:2] == ("near_duplicate", "a")
    assert Deduplicator(near=False).check("x", exact_key(a), None) is None


def test_one_permutation_minhash_for_long_texts():
    h = MinHasher(num_perm=128, ngram=5, one_permutation=True)
    a = text(11, n=3000)
    assert np.array_equal(h.signature(a), MinHasher(num_perm=128, ngram=5, one_permutation=True).signature(a))
    assert jaccard_estimate(h, a, edit(a, 0.005)) > 0.85
    assert jaccard_estimate(h, a, text(12, n=3000)) < 0.05
    short = "just a few words here"  # most buckets empty: densification still gives a comparable signature
    assert jaccard_estimate(h, short, short) == 1.0 and jaccard_estimate(h, short, "other words entirely now") < 0.2
