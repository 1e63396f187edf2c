"""`repetition`: degenerate loops and copy-paste repetition in the reasoning (and answer).

Four signals, each with its own reason so the report shows which one fired:
`dup_line_frac` / `dup_para_frac`: characters in lines/paragraphs that already appeared (datatrove/Gopher style);
`dup_ngram_share`: share of word n-grams that are repeats of an earlier one;
`compression_ratio`: zlib-compressed size / size, over the whole text and over its tail (a loop usually starts late
and runs until the token limit, so the tail window finds a loop the whole-text ratio dilutes).
"""

from __future__ import annotations

import re
import zlib

import numpy as np

from r1distill.core.records import Sample, Verdict
from r1distill.filter.checks import register

_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
_MIX = np.uint64(0x9E3779B97F4A7C15)


def dup_fraction(units: list[str], min_chars: int = 1) -> float:
    """Share of characters (of units at least `min_chars` long) in units seen before."""
    seen: set[str] = set()
    total = dup = 0
    for unit in units:
        unit = unit.strip()
        if len(unit) < min_chars:
            continue
        total += len(unit)
        if unit in seen:
            dup += len(unit)
        else:
            seen.add(unit)
    return dup / total if total else 0.0


_P = 0x100000001B3  # odd: invertible modulo 2^64
_POW: list[np.ndarray] = [np.ones(1, dtype=np.uint64), np.ones(1, dtype=np.uint64)]  # P^j and P^-j, grown on demand


def _powers(n: int) -> tuple[np.ndarray, np.ndarray]:
    if len(_POW[0]) < n:
        size = max(n, 2 * len(_POW[0]))
        with np.errstate(over="ignore"):
            one = np.ones(1, dtype=np.uint64)
            _POW[0] = np.concatenate((one, np.cumprod(np.full(size - 1, _P, dtype=np.uint64))))
            _POW[1] = np.concatenate((one, np.cumprod(np.full(size - 1, pow(_P, -1, 2**64), dtype=np.uint64))))
    return _POW[0][:n], _POW[1][:n]


def word_hashes(text: str) -> np.ndarray:
    """A 64-bit polynomial hash per whitespace-separated word, computed over the UTF-8 bytes in numpy (no Python
    loop over words): each byte adds b*P^j, a word's sum is scaled back by P^-start so equal words hash equally."""
    b = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    if not len(b):
        return np.zeros(0, dtype=np.uint64)
    space = b <= 32
    starts = np.flatnonzero(~space & np.concatenate(([True], space[:-1])))
    if not len(starts):
        return np.zeros(0, dtype=np.uint64)
    pos, inv = _powers(len(b))
    with np.errstate(over="ignore"):
        terms = np.where(space, np.uint64(0), (b.astype(np.uint64) + np.uint64(1)) * pos)
        return np.add.reduceat(terms, starts) * inv[starts]


def dup_ngram_share(words: np.ndarray | list[str], n: int) -> float:
    """1 - distinct/total over word n-grams: 0 for text that never repeats an n-gram, near 1 for a loop.

    `words` are word hashes (`word_hashes`) or strings; n-grams are 64-bit rolling hashes over them (numpy, no
    tuples): a false collision among a few thousand n-grams is vanishingly unlikely."""
    total = len(words) - n + 1
    if total <= 0:
        return 0.0
    if not isinstance(words, np.ndarray):
        words = np.fromiter(map(hash, words), dtype=np.int64, count=len(words)).view(np.uint64)
    grams = words[:total].copy()
    with np.errstate(over="ignore"):
        for j in range(1, n):
            grams = grams * _MIX + words[j : j + total]
    grams.sort()
    return 1.0 - (1 + np.count_nonzero(grams[1:] != grams[:-1])) / total


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(zlib.compress(data, 1)) / len(data) if data else 1.0


def compression_ratios(text: str, window: int) -> tuple[float, float]:
    """(whole-text ratio, ratio of the last `window` bytes) in one zlib pass: the stream is flushed before the
    tail, so the tail's compressed size is known (with the head as context: a tail repeating the head counts too)."""
    data = text.encode("utf-8")
    if not data:
        return 1.0, 1.0
    split = max(0, len(data) - window)
    z = zlib.compressobj(1)
    head = len(z.compress(data[:split])) + len(z.flush(zlib.Z_FULL_FLUSH)) if split else 0
    tail = len(z.compress(data[split:])) + len(z.flush())
    return (head + tail) / len(data), tail / (len(data) - split)


def repetition(
    sample: Sample,
    *,
    max_dup_line_frac: float = 0.3,
    min_line_chars: int = 30,
    max_dup_para_frac: float = 0.3,
    ngram: int = 10,
    max_dup_ngram_share: float = 0.3,
    min_compression_ratio: float = 0.12,
    window_chars: int = 6000,
    min_chars: int = 1000,
    check_answer: bool = True,
) -> Verdict:
    """Drop a reasoning (or answer) over any repetition threshold; texts under `min_chars` are not judged."""
    p = sample.parsed
    for part, text in (("reasoning", p.reasoning), ("answer", p.answer if check_answer else "")):
        if len(text) < min_chars:
            continue
        ratio, tail = compression_ratios(text, window_chars)
        if ratio < min_compression_ratio:
            return Verdict.drop("compression_ratio", part=part, ratio=round(ratio, 4), window="all")
        if len(text) > 2 * window_chars and tail < min_compression_ratio:
            return Verdict.drop("compression_ratio", part=part, ratio=round(tail, 4), window="tail")
        frac = dup_fraction(_PARAGRAPH_BREAK.split(text))
        if frac > max_dup_para_frac:
            return Verdict.drop("dup_para_frac", part=part, frac=round(frac, 4))
        frac = dup_fraction(text.split("\n"), min_line_chars)
        if frac > max_dup_line_frac:
            return Verdict.drop("dup_line_frac", part=part, frac=round(frac, 4))
        share = dup_ngram_share(word_hashes(text), ngram)
        if share > max_dup_ngram_share:
            return Verdict.drop("dup_ngram_share", part=part, share=round(share, 4), n=ngram)
    return Verdict.ok()


register("repetition", repetition)
