"""Loop runs: the same line, sentence or block of them repeated back to back, the commonest degenerate output of a
long-reasoning model (it runs until the token limit when nothing cuts it).

Share-based signals (duplicate paragraphs, n-gram share, compression) miss a short loop after a long ordinary
reasoning: the repeated unit is a small share of the text. These detectors find it whatever its share:

- `word_loop`: the text's words (whitespace-separated, so whitespace is normalised for free; their 64-bit hashes are
  the ones the n-gram share uses) scanned for periodic stretches: for every period p (in words) at which word pairs
  recur often enough, the longest run where word i equals word i-p. A sentence, a line, a paragraph or a
  two-paragraph block repeated k times in a row, at the end or in the middle, is such a run.
- `unit_loop`: the same over sentences and lines, for CJK text (no spaces between words to split on).
- `tail_loop`: the text ending in a block of any length repeated (a period found from where the last characters
  occur before, then its extent by binary search over slice comparisons), whatever its words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# A sentence or line: from a character that is neither space nor sentence punctuation (Latin or CJK) up to sentence
# punctuation or a line break.
_UNIT = re.compile(r"[^\s.!?。！？][^\n.!?。！？]*[.!?。！？]*")
_MIX = np.uint64(0x9E3779B97F4A7C15)


@dataclass
class Loop:
    """A repeated block: where its first copy starts and the run ends (character offsets), the block's text, how
    many copies follow one another, the period in words or units (None for a tail loop) and the run's characters."""

    start: int
    end: int
    unit: str
    count: int
    period_units: int | None
    chars: int


def _candidates(h: np.ndarray, min_repeats: int, max_period: int) -> list[int]:
    """Periods worth checking: distances back to the previous occurrence of a word pair that recur at least half as
    often as a block of that period repeated `min_repeats` times would make them (ordinary text: almost none)."""
    n = len(h)
    if n < 2 * min_repeats:
        return []
    # One plain sort finds previous occurrences: each pair's hash keeps its high bits and carries its position in
    # the low ones, so equal pairs sort next to each other in text order (a 44-bit collision is negligible here).
    bits = max(1, int(n).bit_length())
    with np.errstate(over="ignore"):
        pairs = (h[:-1] * _MIX + h[1:]) * _MIX  # multiplied again: a short word's hash lives in the low bits
        keys = (pairs >> np.uint64(bits) << np.uint64(bits)) | np.arange(n - 1, dtype=np.uint64)
    keys.sort()
    same = (keys[1:] >> np.uint64(bits)) == (keys[:-1] >> np.uint64(bits))
    mask = np.uint64((1 << bits) - 1)
    dist = ((keys[1:] & mask) - (keys[:-1] & mask))[same].astype(np.int64)
    dist = dist[dist <= max_period]
    if not len(dist):
        return []
    counts = np.bincount(dist)
    p = np.arange(len(counts))
    return np.flatnonzero((p > 0) & (counts >= np.maximum(1, 0.5 * ((min_repeats - 1) * p - 1)))).tolist()


def ngram_scan(h: np.ndarray, n: int, min_repeats: int, max_period: int) -> tuple[float, list[int]]:
    """(the n-gram share of `repetition.dup_ngram_share`, the periods `word_loop` should check) from one sort.

    The n-gram hashes keep their high bits and carry their position in the low ones, so one plain sort gives both
    the distinct count and, for equal n-grams (adjacent, in text order), the distance back to the previous
    occurrence. A block of p words repeated k times repeats its n-grams at distance p about (k-1)p - n times; the
    periods too short for that (p < n/(k-1)) are always checked."""
    direct = list(range(1, min(-(-n // max(min_repeats - 1, 1)), max_period) + 1))
    total = len(h) - n + 1
    if total <= 1:
        return 0.0, direct if len(h) >= min_repeats else []
    grams = h[:total].copy()
    bits = max(1, int(total).bit_length())
    hi = np.uint64(bits)
    with np.errstate(over="ignore"):
        for j in range(1, n):
            grams = grams * _MIX + h[j : j + total]
        # Multiplied once more: the last word was only added, and a short word's hash lives in the low bits.
        keys = (grams * _MIX >> hi << hi) | _positions(total)
    keys.sort()
    top = keys >> hi
    same = top[1:] == top[:-1]
    repeats = int(np.count_nonzero(same))
    share = 1.0 - (total - repeats) / total
    if repeats < 2:
        return share, direct  # a loop of a longer block repeats several n-grams
    low = keys & np.uint64((1 << bits) - 1)
    dist = (low[1:] - low[:-1])[same].astype(np.int64)
    dist = dist[dist <= max_period]
    if not len(dist):
        return share, direct
    counts = np.bincount(dist)
    p = np.arange(len(counts))
    need = np.maximum(1, 0.5 * ((min_repeats - 1) * p - n + 1))
    found = np.flatnonzero((p > len(direct)) & (counts >= need)).tolist()
    return share, direct + found


_POSITIONS = np.arange(1 << 16, dtype=np.uint64)


def _positions(n: int) -> np.ndarray:
    global _POSITIONS
    if len(_POSITIONS) < n:
        _POSITIONS = np.arange(max(n, 2 * len(_POSITIONS)), dtype=np.uint64)
    return _POSITIONS[:n]


def _runs(h: np.ndarray, periods: list[int], min_repeats: int) -> list[tuple[int, int, int]]:
    """(first item, period, copies) of every stretch where item i equals item i-p for `min_repeats`+ copies."""
    out = []
    for p in periods:
        eq = h[p:] == h[:-p]
        if np.count_nonzero(eq) < (min_repeats - 1) * p:
            continue  # too few equal pairs for one run: most periods of ordinary text
        edges = np.flatnonzero(np.diff(np.concatenate(([0], eq.view(np.int8), [0]))))
        starts, stops = edges[::2], edges[1::2]
        long = (stops - starts) >= (min_repeats - 1) * p
        out += [(s, p, (e - s + p) // p) for s, e in zip(starts[long].tolist(), stops[long].tolist(), strict=True)]
    return out


def _best(text: str, spans, runs, min_block_chars: int, min_run_chars: int) -> Loop | None:
    """The run covering most characters whose block and run are long enough, as a Loop (None: no such run).
    `spans(i)` is the (start, end) character offsets of item i."""
    best = None
    for first, p, copies in runs:
        start, end = spans(first)[0], spans(first + copies * p - 1)[1]
        block = spans(first + p - 1)[1] - start
        if block >= min_block_chars and end - start >= min_run_chars and (best is None or end - start > best[0]):
            best = (end - start, first, p, copies, start, end)
    if best is None:
        return None
    chars, first, p, copies, start, end = best
    unit = text[start : spans(first + p - 1)[1]]
    return Loop(start, end, unit.strip(), copies, p, chars)


def word_loop(
    text: str,
    table,
    *,
    min_repeats: int,
    min_run_chars: int,
    min_block_chars: int,
    max_period: int,
    periods: list[int] | None = None,
) -> Loop | None:
    """The longest run of a block of at most `max_period` words repeated `min_repeats`+ times in a row, covering
    `min_run_chars`+ characters with a block of `min_block_chars`+; `table` is `repetition.word_table(text)`,
    `periods` the candidates from `ngram_scan` (else found from word pairs)."""
    hashes, starts, data = table
    if periods is None:
        periods = _candidates(hashes, min_repeats, max_period)
    runs = _runs(hashes, periods, min_repeats)
    if not runs:
        return None
    space = np.flatnonzero(data <= 32)
    ascii_text = len(data) == len(text)

    def chars(offset: int) -> int:  # byte offset -> character offset (a word boundary: a character boundary too)
        return offset if ascii_text else len(data[:offset].tobytes().decode("utf-8"))

    def spans(i: int) -> tuple[int, int]:
        start = int(starts[i])
        k = np.searchsorted(space, start)
        return chars(start), chars(int(space[k]) if k < len(space) else len(data))

    return _best(text, spans, runs, min_block_chars, min_run_chars)


def unit_loop(text: str, *, min_repeats: int, min_run_chars: int, min_block_chars: int, max_period: int) -> Loop | None:
    """`word_loop` over sentences and lines (whitespace normalised in each) instead of words: for CJK text."""
    matches = list(_UNIT.finditer(text))
    norm = [" ".join(m.group().split()) for m in matches]
    if len(set(norm)) == len(norm):
        return None
    h = np.fromiter(map(hash, norm), dtype=np.int64, count=len(norm)).view(np.uint64)
    runs = _runs(h, _candidates(h, min_repeats, max_period), min_repeats)
    return _best(text, lambda i: matches[i].span(), runs, min_block_chars, min_run_chars) if runs else None


def tail_loop(text: str, *, min_repeats: int, min_run_chars: int, window: int = 20_000, probes: int = 6) -> Loop | None:
    """The text (trailing whitespace aside) ending in a block of any length repeated `min_repeats`+ times over at
    least `min_run_chars` characters; None when it does not. The candidate periods are the distances back to the
    last `probes` earlier occurrences of the final 32 characters within `window`."""
    t = text.rstrip()
    n = len(t)
    key = 32
    if n < max(2 * key, min_run_chars):
        return None
    tail = t[n - key :]
    lo, hi = max(0, n - window), n - 1
    best: tuple[int, int] | None = None  # (periodic length incl. the first copy, period)
    for _ in range(probes):
        pos = t.rfind(tail, lo, hi)
        if pos < 0:
            break
        p = n - key - pos
        hi = pos + key - 1
        if p <= 0:
            continue
        length = _periodic_extent(t, p) + p
        if length // p >= min_repeats and length >= min_run_chars and (best is None or length > best[0]):
            best = (length, p)
    if best is None:
        return None
    length, p = best
    start = n - length
    return Loop(start, n, t[start : start + p].strip(), length // p, None, length)


def _periodic_extent(t: str, p: int) -> int:
    """The largest L with t[-L:] == t[-L-p:-p]: how far back from the end the text repeats itself with period p."""
    n = len(t)
    lo, hi = 0, n - p
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if t[n - mid :] == t[n - mid - p : n - p]:
            lo = mid
        else:
            hi = mid - 1
    return lo
