"""`repetition`: degenerate loops and copy-paste repetition in the reasoning (and answer).

Five signals, each with its own reason so the report shows which one fired:
`loop_run`: a sentence, line or block of them repeated back to back, or a text ending in a repeated block of any
length (`loops.py`): exact, so it finds a short loop after a long ordinary reasoning that every share misses;
`dup_line_frac` / `dup_para_frac`: characters in lines/paragraphs that already appeared (datatrove/Gopher style);
`dup_ngram_share`: share of word n-grams that are repeats of an earlier one;
`compression_ratio`: zlib-compressed size / size, over the whole text and over its tail (a loop usually starts late
and runs until the token limit, so the tail window finds a loop the whole-text ratio dilutes).
"""

from __future__ import annotations

import re
import zlib
from typing import Any

import numpy as np

from r1distill.core.records import Sample, Verdict
from r1distill.core.text import CJK_CHAR, may_have_cjk
from r1distill.core.text import PARAGRAPH_BREAK as _PARAGRAPH_BREAK
from r1distill.filter.checks import evidence, register
from r1distill.filter.checks.loops import Loop, ngram_scan, tail_loop, unit_loop, word_loop

_MIX = np.uint64(0x9E3779B97F4A7C15)


def dup_fraction(units: list[str], min_chars: int = 1) -> float:
    """Share of characters (of units at least `min_chars` long, stripped) in units seen before: every copy after
    the first of a unit, i.e. all characters minus those of the distinct units (no Python loop over units)."""
    stripped = map(str.strip, units)
    kept = [u for u in stripped if u] if min_chars <= 1 else [u for u in stripped if len(u) >= min_chars]
    total = sum(map(len, kept))
    return (total - sum(map(len, set(kept)))) / total if total else 0.0


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
    return word_table(text)[0]


def word_table(text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(`word_hashes`, the byte offset where each word starts, the UTF-8 bytes): what the loop detector needs to
    turn a run of words back into text."""
    b = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    empty = np.zeros(0, dtype=np.uint64)
    if not len(b):
        return empty, empty, b
    space = b <= 32
    starts = np.flatnonzero(~space & np.concatenate(([True], space[:-1])))
    if not len(starts):
        return empty, starts, b
    pos, inv = _powers(len(b))
    with np.errstate(over="ignore"):
        terms = np.where(space, np.uint64(0), (b.astype(np.uint64) + np.uint64(1)) * pos)
        return np.add.reduceat(terms, starts) * inv[starts], starts, b


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
    loops: bool = True,
    loop_min_repeats: int = 4,
    loop_min_block_chars: int = 8,
    loop_min_run_chars: int = 40,
    loop_max_period: int = 1000,
    tail_min_repeats: int = 3,
    tail_min_run_chars: int = 300,
) -> Verdict:
    """Drop a reasoning (or answer) that loops (`loop_run`, judged at any length) or is over a share threshold
    (texts under `min_chars` are not judged by shares). A loop run is a block of 1..`loop_max_period` sentences or
    lines (words, or sentences and lines in CJK text) repeated `loop_min_repeats`+ times in a row over
    `loop_min_run_chars`+ characters, or a text ending in any block
    repeated `tail_min_repeats`+ times over `tail_min_run_chars`+. Every drop carries its evidence."""
    p = sample.parsed
    for part, text in (("reasoning", p.reasoning), ("answer", p.answer if check_answer else "")):
        share = None  # the n-gram share, computed with the loop candidates when the loop check runs
        if loops and len(text) >= min(loop_min_run_chars, tail_min_run_chars):
            params = {"min_repeats": loop_min_repeats, "min_run_chars": loop_min_run_chars,
                      "min_block_chars": loop_min_block_chars, "max_period": loop_max_period}  # fmt: skip
            if may_have_cjk(text) and CJK_CHAR.search(text):
                loop = unit_loop(text, **params)  # no spaces between CJK words: sentences and lines instead
            else:
                table = word_table(text)
                share, periods = ngram_scan(table[0], ngram, loop_min_repeats, loop_max_period)
                loop = word_loop(text, table, periods=periods, **params)
            rule: dict[str, Any] = {"min_repeats": loop_min_repeats, "min_run_chars": loop_min_run_chars}
            if loop is None:
                loop = tail_loop(text, min_repeats=tail_min_repeats, min_run_chars=tail_min_run_chars)
                rule = {"min_repeats": tail_min_repeats, "min_run_chars": tail_min_run_chars, "kind": "tail"}
            if loop is not None:
                return _loop_verdict(part, text, loop, rule)
        if len(text) < min_chars:
            continue
        ratio, tail = compression_ratios(text, window_chars)
        if ratio < min_compression_ratio:
            return _drop("compression_ratio", part, text, {"min_compression_ratio": min_compression_ratio},
                         ratio=round(ratio, 4), window="all")  # fmt: skip
        if len(text) > 2 * window_chars and tail < min_compression_ratio:
            return _drop("compression_ratio", part, text, {"min_compression_ratio": min_compression_ratio},
                         ratio=round(tail, 4), window="tail", start=len(text) - window_chars)  # fmt: skip
        frac = dup_fraction(_PARAGRAPH_BREAK.split(text))
        if frac > max_dup_para_frac:
            return _drop("dup_para_frac", part, text, {"max_dup_para_frac": max_dup_para_frac}, frac=round(frac, 4))
        frac = dup_fraction(text.split("\n"), min_line_chars)
        if frac > max_dup_line_frac:
            return _drop("dup_line_frac", part, text, {"max_dup_line_frac": max_dup_line_frac}, frac=round(frac, 4))
        if share is None:
            share = dup_ngram_share(word_hashes(text), ngram)
        if share > max_dup_ngram_share:
            return _drop("dup_ngram_share", part, text, {"max_dup_ngram_share": max_dup_ngram_share},
                         share=round(share, 4), n=ngram)  # fmt: skip
    return Verdict.ok()


def _loop_verdict(part: str, text: str, loop: Loop, rule: dict[str, Any]) -> Verdict:
    unit = loop.unit if len(loop.unit) <= 300 else loop.unit[:297] + "..."
    v = Verdict.drop("loop_run", part=part, count=loop.count, unit_chars=len(loop.unit), run_chars=loop.chars,
                     kind=rule.get("kind", "units"))  # fmt: skip
    v.evidence = evidence(part, text, loop.start, loop.end, threshold=rule, unit=unit, count=loop.count)
    return v


def _drop(reason: str, part: str, text: str, threshold: dict[str, Any], start: int | None = None, **details) -> Verdict:
    """A share-based drop with its evidence: the first repeated paragraph, line or n-gram (or the window's start)."""
    v = Verdict.drop(reason, part=part, **details)
    where = first_repeat(text) if start is None else (start, start + 300)
    v.evidence = evidence(part, text, *where, threshold=threshold, value=next(iter(details.values())))
    return v


def first_repeat(text: str, ngram: int = 10) -> tuple[int, int]:
    """(start, end) of the first paragraph, else line, else word `ngram` that repeats an earlier one: where the
    repetition a share measured becomes visible. (0, 300) when nothing repeats exactly (compression alone)."""
    for rx in (_PARAGRAPH_BREAK, _LINE_BREAK):
        seen: set[str] = set()
        pos = 0
        for m in [*rx.finditer(text), None]:
            end = m.start() if m else len(text)
            unit = text[pos:end].strip()
            if len(unit) >= 30 and unit in seen:
                return pos, end
            seen.add(unit)
            pos = m.end() if m else pos
    words = [(m.start(), m.end(), m.group()) for m in _WORD.finditer(text)]
    grams: set[tuple[str, ...]] = set()
    for i in range(len(words) - ngram + 1):
        g = tuple(w for _, _, w in words[i : i + ngram])
        if g in grams:
            return words[i][0], words[i][0] + 300  # the repeated n-gram and what follows it
        grams.add(g)
    return 0, 300


_LINE_BREAK = re.compile(r"\n")
_WORD = re.compile(r"\S+")

register("repetition", repetition)
