"""Benchmark decontamination: word n-gram overlap between a training problem and every benchmark problem.

A training problem is contaminated by benchmark problem B when it contains at least `min_overlap` of B's word
n-grams (measured against B, so a benchmark problem pasted inside a longer prompt is still caught). Two variants:

- verbatim: lowercased words and numbers, punctuation and LaTeX markup ignored (`$9$` and `9` agree);
- numbers masked: every number becomes `#`, which catches a benchmark problem re-posted with its numbers changed.
  Generic templates would match too, so this variant only uses benchmark problems of `min_masked_tokens` tokens.

Benchmark problems shorter than `ngram` tokens are matched on their whole normalized text.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1distill.core.store import StageError, read_jsonl

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"[^\W\d_]+|\d+(?:\.\d+)?")
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def tokens(text: str, mask_numbers: bool = False) -> list[str]:
    toks = _TOKEN.findall(text.lower())
    if mask_numbers:
        toks = ["#" if t[0].isdigit() else t for t in toks]
    return toks


def ngrams(toks: list[str], n: int) -> set[tuple[str, ...]]:
    return set(zip(*(toks[i:] for i in range(n)), strict=False))


@dataclass
class Benchmark:
    """A benchmark's problems, read from a local JSON/JSONL file (`field` names the problem text)."""

    name: str
    problems: list[str]

    @classmethod
    def load(cls, path: str | Path, field: str = "problem", name: str | None = None) -> Benchmark:
        path = Path(path)
        if not path.exists():
            raise StageError(f"{path}: benchmark file not found (decontam.benchmarks[].path)")
        if path.suffix == ".json":
            rows: list[Any] = json.loads(path.read_text(encoding="utf-8"))
        else:
            rows = [row for _, row in read_jsonl(path, skip_blank=True)]
        fields = [f.strip() for f in field.split(",")]  # `problem,question`: the first field present wins
        problems = []
        for i, row in enumerate(rows):
            value = next((row[f] for f in fields if isinstance(row, dict) and row.get(f)), None)
            if not isinstance(value, str):
                raise StageError(f"{path}: row {i + 1} has no text field {field!r}; set decontam.benchmarks[].field")
            problems.append(value)
        return cls(name or path.stem, problems)


class Decontaminator:
    """`match(problem)` -> the benchmark problem it overlaps, or None. Build once per process; cheap to query."""

    def __init__(
        self,
        benchmarks: list[Benchmark],
        ngram: int = 8,
        min_overlap: float = 0.5,
        numbers_masked: bool = True,
        min_masked_tokens: int = 12,
    ):
        self.ngram = ngram
        self.min_overlap = min_overlap
        self.numbers_masked = numbers_masked
        self._refs: list[tuple[str, int]] = []  # (benchmark, row) per indexed problem
        self._texts: dict[tuple[str, int], str] = {}  # the benchmark problem, shown as a drop's evidence
        self._whole: dict[str, int] = {}
        self._index: dict[bool, dict[tuple[str, ...], list[int]]] = {False: {}, True: {}}
        self._size: dict[bool, list[int]] = {False: [], True: []}
        for bench in benchmarks:
            for row, problem in enumerate(bench.problems):
                self._add(bench.name, row, problem, min_masked_tokens)
        log.info("decontam: %d benchmark problems from %d benchmark(s)", len(self._refs), len(benchmarks))

    def _add(self, name: str, row: int, problem: str, min_masked_tokens: int) -> None:
        ref = len(self._refs)
        self._refs.append((name, row))
        self._texts[(name, row)] = problem
        self._whole.setdefault(" ".join(tokens(problem)), ref)
        for masked in (False, True):
            toks = tokens(problem, masked)
            usable = len(toks) >= self.ngram and (
                not masked or (self.numbers_masked and len(toks) >= min_masked_tokens)
            )
            grams = ngrams(toks, self.ngram) if usable else set()
            self._size[masked].append(len(grams))
            index = self._index[masked]
            for gram in grams:
                index.setdefault(gram, []).append(ref)

    def text_of(self, hit: dict[str, Any]) -> str:
        """The benchmark problem a `match` result names (what a person compares the training problem with)."""
        return self._texts.get((hit["benchmark"], hit["row"]), "")

    def match(self, problem: str) -> dict[str, Any] | None:
        """{"benchmark", "row", "overlap", "variant"} of the best-overlapping benchmark problem over the threshold."""
        toks = tokens(problem)
        whole = self._whole.get(" ".join(toks))
        if whole is not None:
            name, row = self._refs[whole]
            return {"benchmark": name, "row": row, "overlap": 1.0, "variant": "exact"}
        for masked in (False, True) if self.numbers_masked else (False,):
            grams = ngrams(tokens(problem, True) if masked else toks, self.ngram)
            index = self._index[masked]
            hits = Counter(ref for gram in grams for ref in index.get(gram, ()))
            best = None
            for ref, count in hits.items():
                overlap = count / self._size[masked][ref]
                if overlap >= self.min_overlap and (best is None or overlap > best[1]):
                    best = (ref, overlap)
            if best is not None:
                name, row = self._refs[best[0]]
                variant = "numbers_masked" if masked else "verbatim"
                return {"benchmark": name, "row": row, "overlap": round(best[1], 3), "variant": variant}
        return None
