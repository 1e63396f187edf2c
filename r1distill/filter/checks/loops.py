"""Loop runs: the same line, sentence or block of them repeated back to back, the commonest degenerate output of a
long-reasoning model (it runs until the token limit when nothing cuts it).

Share-based signals (duplicate paragraphs, n-gram share, compression) miss a short loop after a long ordinary
reasoning: the repeated unit is a small share of the text. Two exact detectors find it whatever its share:

- `unit_loop`: the text cut into sentences and lines (whitespace normalised, so a loop that varies its line breaks
  still matches), and for every period p of 1..`max_period` units that recurs, the longest stretch where unit i
  equals unit i-p: a sentence, a paragraph or a two-paragraph block repeated k times in a row, at the end or in the
  middle.
- `tail_loop`: the text ending in a block of any length repeated (a period found from where the last characters
  occur before, then its extent by binary search over slice comparisons): catches loops with no sentence or line
  boundary in them (`1, 1, 1, ...`, a phrase without punctuation).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

# A sentence or line: text up to sentence punctuation (Latin or CJK) or a line break.
_UNIT = re.compile(r"[^\n.!?。！？]+[.!?。！？]*")


@dataclass
class Loop:
    """A repeated block: where it starts (character offset of its first copy), its period (in characters for a tail
    loop, in units for a unit loop), the block's text, how many copies follow one another and how many characters
    they cover."""

    start: int
    end: int
    unit: str
    count: int
    period_units: int | None
    chars: int


def unit_loop(text: str, *, min_repeats: int, min_run_chars: int, min_block_chars: int, max_period: int) -> Loop | None:
    """The longest run (in characters) of a block of 1..`max_period` units repeated at least `min_repeats` times in
    a row, covering `min_run_chars` and with a block of `min_block_chars` or more (after whitespace is
    normalised); None when there is none."""
    units = _UNIT.findall(text)
    if len(units) < min_repeats:
        return None
    norm = [" ".join(u.split()) for u in units]
    keep = [i for i, u in enumerate(norm) if u]
    if len(keep) < len(norm):
        norm = [norm[i] for i in keep]
    n = len(norm)
    if n < min_repeats:
        return None
    # Candidate periods: distances back to a unit's previous occurrence that recur often enough for a run (a block
    # repeated k times gives each of its distinct units that distance k-1 times). Ordinary text has almost none.
    last: dict[str, int] = {}
    dists: dict[int, int] = {}
    for i, u in enumerate(norm):
        j = last.get(u)
        if j is not None and i - j <= max_period:
            dists[i - j] = dists.get(i - j, 0) + 1
        last[u] = i
    periods = sorted(d for d, c in dists.items() if c >= min_repeats - 1)
    if not periods:
        return None
    h = np.fromiter(map(hash, norm), dtype=np.int64, count=n)
    lens = np.fromiter(map(len, norm), dtype=np.int64, count=n)
    csum = np.concatenate(([0], np.cumsum(lens)))
    best: tuple[int, int, int, int] | None = None  # (run chars, first unit, period, copies)
    for p in periods:
        eq = h[p:] == h[:-p]
        edges = np.flatnonzero(np.diff(np.concatenate(([0], eq.view(np.int8), [0]))))
        starts, stops = edges[::2], edges[1::2]
        long = (stops - starts) >= (min_repeats - 1) * p
        for s, e in zip(starts[long].tolist(), stops[long].tolist(), strict=True):
            copies = (e - s + p) // p
            block = int(csum[s + p] - csum[s])
            run = int(csum[s + copies * p] - csum[s])
            if block >= min_block_chars and run >= min_run_chars and (best is None or run > best[0]):
                best = (run, s, p, copies)
    if best is None:
        return None
    run, first, p, copies = best
    # Offsets only for the loop found: map the normalised units back onto the original text.
    spans = [m.span() for m in _UNIT.finditer(text)]
    if len(keep) < len(spans):
        spans = [spans[i] for i in keep]
    start, block_end = spans[first][0], spans[first + p - 1][1]
    end = spans[first + copies * p - 1][1]
    return Loop(start, end, text[start:block_end].strip(), copies, p, run)


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
