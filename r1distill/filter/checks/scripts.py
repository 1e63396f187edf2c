"""Letters per writing system, per sentence: what `language_mix` judges a text by.

`script_units` counts one string with regexes (prompts, tests). `ScriptTable` counts a whole text and all its
sentences at once in numpy: every character's script from a code-point lookup table, alphabetic runs of the
minimum word length kept, prefix sums per script, so a sentence's counts are two array lookups. The two agree
exactly (a letter run never crosses a sentence boundary: boundaries are spaces, punctuation or line breaks).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np

from r1distill.core.text import SCRIPT_RANGES as _RANGES

CJK_WEIGHT = {"han": 3.0, "kana": 2.0, "hangul": 3.0}
# Alphabetic scripts count only in words of two letters or more: `x`, `θ` and `π` are symbols, not language.
# Greek needs three letters: physics writes `πε₀` and `αβ` as symbols.
_MIN_WORD = {"greek": 3}
SCRIPT_RX = {
    name: re.compile(f"[{chars}]" if name in CJK_WEIGHT else f"[{chars}]{{{_MIN_WORD.get(name, 2)},}}")
    for name, chars in _RANGES.items()
}
SCRIPTS = list(_RANGES)
_ID = {name: i + 1 for i, name in enumerate(SCRIPTS)}  # 0: no script (digits, punctuation, symbols, spaces)
_SENTENCE = re.compile(r"(?<=[.!?;:])\s+|(?<=[。！？；：])|\n+")
_SENTENCE_KEEP = re.compile(f"({_SENTENCE.pattern})")


def _lookup() -> np.ndarray:
    """Script id of every BMP code point (the ranges are BMP only)."""
    table = np.zeros(0x10000, dtype=np.uint8)
    for name, chars in _RANGES.items():
        i = 0
        while i < len(chars):
            if i + 2 < len(chars) and chars[i + 1] == "-":
                table[ord(chars[i]) : ord(chars[i + 2]) + 1] = _ID[name]
                i += 3
            else:
                table[ord(chars[i])] = _ID[name]
                i += 1
    return table


_LUT = _lookup()
# UTF-8 lead bytes of U+0340..U+1FFF and U+3000..U+FFFF: every non-Latin range above lies there (U+2000..U+2FFF,
# lead 0xE2, is punctuation, arrows and mathematics; four-byte characters are beyond the ranges).
_NOT_SCRIPT_LEAD = bytes(b for b in range(256) if not (0xCD <= b <= 0xE1 or 0xE3 <= b <= 0xEF))


def script_units(text: str, scripts: Iterable[str] | None = None) -> dict[str, float]:
    """Letters per script in `text` (CJK characters weighted), only scripts that occur; `scripts` limits the count
    to those known to be present (a sentence of a text can only hold the text's scripts)."""
    if text.isascii():
        n = sum(map(len, SCRIPT_RX["latin"].findall(text)))
        return {"latin": float(n)} if n else {}
    out = {}
    for name in SCRIPT_RX if scripts is None else scripts:
        n = sum(map(len, SCRIPT_RX[name].findall(text)))
        if n:
            out[name] = n * CJK_WEIGHT.get(name, 1.0)
    if "kana" in out:  # Japanese writes Han and kana together: one language
        out["kana"] += out.pop("han", 0.0)
    return out


def _runs_at_least(mask: np.ndarray, k: int) -> np.ndarray:
    """`mask` keeping only its runs of `k` or more consecutive True."""
    if k <= 1 or not mask.any():
        return mask
    edges = np.flatnonzero(np.diff(np.concatenate(([0], mask.view(np.int8), [0]))))
    starts, stops = edges[::2], edges[1::2]
    long = stops - starts >= k
    keep = np.zeros(len(mask) + 1, dtype=np.int8)
    keep[starts[long]] = 1  # runs are apart by at least one False: no start is another run's stop
    keep[stops[long]] = -1
    return np.cumsum(keep[:-1], dtype=np.int8) > 0


class ScriptTable:
    """Per-script letter counts of `text`, for the whole text and for any span of it (`counts(starts, ends)`)."""

    def __init__(self, text: str):
        cp = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        cls = _LUT[np.minimum(cp, 0xFFFF)]
        present = np.flatnonzero(np.bincount(cls, minlength=len(SCRIPTS) + 1)[1:]) + 1
        self.scripts = [SCRIPTS[i - 1] for i in present]
        self._prefix: dict[str, np.ndarray] = {}
        for name, i in zip(self.scripts, present, strict=True):
            counted = cls == i
            if name not in CJK_WEIGHT:
                counted = _runs_at_least(counted, _MIN_WORD.get(name, 2))
            if counted.any():
                self._prefix[name] = np.concatenate(([0], np.cumsum(counted)))
        if "latin" in self._prefix:  # Latin words of four letters or more: `ac - bd`, `ROS` are no language
            long = _runs_at_least(cls == _ID["latin"], 4)
            self._prefix["long_latin"] = np.concatenate(([0], np.cumsum(long)))

    def units(self) -> dict[str, float]:
        """`script_units` of the whole text."""
        out = {n: float(p[-1]) * CJK_WEIGHT.get(n, 1.0) for n, p in self._prefix.items() if n != "long_latin"}
        if "kana" in out:
            out["kana"] += out.pop("han", 0.0)
        return out

    def counts(self, starts: np.ndarray, ends: np.ndarray) -> dict[str, np.ndarray]:
        """Weighted letters per script in each span [start, end), kana taking the Han of a span that has kana
        (as `script_units` does per sentence); plus `long_latin`, unweighted."""
        out = {n: (p[ends] - p[starts]) * CJK_WEIGHT.get(n, 1.0) for n, p in self._prefix.items()}
        if "kana" in out and "han" in out:
            has_kana = out["kana"] > 0
            out["kana"] = out["kana"] + np.where(has_kana, out["han"], 0.0)
            out["han"] = np.where(has_kana, 0.0, out["han"])
        return out


def sentences(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(starts, ends) of the sentences of `text`: the pieces `_SENTENCE.split` would give, as offsets (a split
    that keeps its separators, whose lengths add up to the offsets: no Python loop over sentences)."""
    parts = _SENTENCE_KEEP.split(text)
    offsets = np.concatenate(([0], np.cumsum(np.fromiter(map(len, parts), dtype=np.int64, count=len(parts)))))
    return offsets[0:-1:2], offsets[1::2]


def has_non_latin(text: str) -> bool:
    """Whether `text` holds a letter of another script than Latin (Greek only as a word of three letters)."""
    if text.isascii() or not text.encode("utf-8").translate(None, _NOT_SCRIPT_LEAD):
        return False  # no UTF-8 lead byte of a non-Latin script's block (English punctuation and maths: 0xE2)
    cls = _LUT[np.minimum(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32), 0xFFFF)]
    other = (cls > 0) & (cls != _ID["latin"]) & (cls != _ID["greek"])
    return bool(other.any() or _runs_at_least(cls == _ID["greek"], 3).any())
