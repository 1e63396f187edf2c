"""Exact and near-duplicate removal: MinHash signatures and banded LSH, keeping the first of each cluster.

Signatures are computed where the samples are (the filter's worker processes); the index lives in one process
and sees the signatures in input order, so the same input always keeps the same samples.

MinHash here is numpy over 64-bit word-n-gram hashes: each n-gram hash goes through `num_perm` random affine maps
(mod 2^64) and the signature keeps each map's minimum. Two texts agree in a signature position with probability
equal to the Jaccard similarity of their n-gram sets. LSH cuts the signature into `bands` of `rows`: texts that
agree on a whole band become candidates, and a candidate counts as a duplicate only when its estimated Jaccard
(share of equal positions) reaches the threshold, so band collisions never drop a sample by themselves.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

import numpy as np
import xxhash

from r1distill.core.text import CJK as _CJK

# Words; CJK characters are words of their own (Chinese has no spaces to split on).
_WORD = re.compile(f"[{_CJK}]|[^\\W{_CJK}]+")
_PLAIN_WORD = re.compile(r"\w+")  # the same split for text without CJK, twice as fast
_HAS_CJK = re.compile(f"[{_CJK}]")
_MIX = np.uint64(0x9E3779B97F4A7C15)


def normalize(text: str) -> str:
    """Lowercased words joined by single spaces: what exact dedup compares (spacing/punctuation do not count)."""
    return " ".join(_WORD.findall(text.lower()))


def exact_key(text: str, words: bool = True) -> str:
    """Hash of the normalized text. `words=False` only lowercases and collapses whitespace: five times faster, for
    long completions (punctuation-only differences are left to near-duplicate detection)."""
    norm = normalize(text) if words else " ".join(text.lower().split())
    return hashlib.blake2b(norm.encode("utf-8"), digest_size=12).hexdigest()


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with bands*rows <= num_perm whose S-curve midpoint (1/b)^(1/r) is nearest the threshold."""
    best = (1, num_perm)
    err = 2.0
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        mid = (1.0 / bands) ** (1.0 / rows)
        if abs(mid - threshold) < err:
            best, err = (bands, rows), abs(mid - threshold)
    return best


@dataclass
class MinHasher:
    """`signature(text)`: num_perm uint64 minima over the text's word n-grams (deterministic across processes).

    `one_permutation=True` (for long texts) hashes each n-gram once and keeps the minimum per bucket of the hash
    range (one-permutation hashing with rotation densification for empty buckets): O(n) instead of O(n x num_perm),
    the same collision probability. Signatures of the two kinds must not be compared with each other.
    """

    num_perm: int = 128
    ngram: int = 5
    seed: int = 1
    one_permutation: bool = False

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self._a = rng.integers(1, 2**63, self.num_perm, dtype=np.uint64) | np.uint64(1)
        self._b = rng.integers(0, 2**63, self.num_perm, dtype=np.uint64)
        if self.one_permutation:
            bits = self.num_perm.bit_length() - 1
            if 1 << bits != self.num_perm:
                raise ValueError(f"one-permutation MinHash needs num_perm a power of two, got {self.num_perm}")
            self._shift = np.uint64(64 - bits)
            self._low = np.uint64((1 << (64 - bits)) - 1)

    def shingles(self, text: str) -> np.ndarray:
        """64-bit hashes of the text's word n-grams (with repeats: a minimum does not care)."""
        text = text.lower()
        words = (_WORD if _HAS_CJK.search(text) else _PLAIN_WORD).findall(text)
        if not words:
            return np.zeros(1, dtype=np.uint64)
        h = np.fromiter(map(xxhash.xxh3_64_intdigest, map(str.encode, words)), dtype=np.uint64, count=len(words))
        n = min(self.ngram, len(words))
        grams = h[: len(h) - n + 1].copy()
        with np.errstate(over="ignore"):
            for j in range(1, n):
                grams = grams * _MIX + h[j : len(h) - n + 1 + j]
        return grams

    def signature(self, text: str) -> np.ndarray:
        grams = self.shingles(text)
        if self.one_permutation:
            return self._one_permutation(grams)
        with np.errstate(over="ignore"):
            # Chunks bound the (shingles x num_perm) temporary for very long texts.
            sig = np.full(self.num_perm, np.iinfo(np.uint64).max, dtype=np.uint64)
            for start in range(0, len(grams), 4096):
                block = grams[start : start + 4096, None] * self._a[None, :] + self._b[None, :]
                np.minimum(sig, block.min(axis=0), out=sig)
        return sig

    def _one_permutation(self, grams: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            x = np.sort(grams * self._a[0] + self._b[0])
            bins = (x >> self._shift).astype(np.int64)
            first = np.flatnonzero(np.concatenate(([True], bins[1:] != bins[:-1])))  # sorted: first = bucket min
            filled = bins[first]
            sig = np.zeros(self.num_perm, dtype=np.uint64)
            sig[filled] = x[first] & self._low
            if len(filled) < self.num_perm:
                # Rotation densification: an empty bucket takes the next filled one's value, offset by the distance.
                pos = np.arange(self.num_perm)
                nxt = np.searchsorted(filled, pos) % len(filled)
                dist = (filled[nxt] - pos) % self.num_perm
                empty = np.ones(self.num_perm, dtype=bool)
                empty[filled] = False
                sig[empty] = sig[filled[nxt]][empty] + dist[empty].astype(np.uint64) * _MIX
        return sig


class LSHIndex:
    """Banded LSH over signatures; `add_or_match` returns the key of an earlier near-duplicate, or indexes the new
    item and returns None.

    A band is looked up by a 64-bit hash of its rows (a random linear map mod 2^64), not by its bytes, and a bucket
    with one item holds that item's number rather than a list: about 1 KB per indexed item instead of 3 at a
    million samples. Two different bands that share a hash only make a candidate, which the Jaccard check settles.
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128):
        self.threshold = threshold
        self.bands, self.rows = lsh_params(threshold, num_perm)
        rng = np.random.default_rng(7)
        self._mult = rng.integers(1, 2**63, (1, self.rows), dtype=np.uint64) | np.uint64(1)
        self._tables: list[dict[int, int | list[int]]] = [{} for _ in range(self.bands)]
        self._sigs: list[np.ndarray] = []
        self._keys: list[object] = []

    def _band_keys(self, sig: np.ndarray) -> list[int]:
        with np.errstate(over="ignore"):
            rows = sig[: self.bands * self.rows].reshape(self.bands, self.rows)
            return (rows * self._mult).sum(axis=1, dtype=np.uint64).tolist()

    def add_or_match(self, key: object, sig: np.ndarray) -> tuple[object, float] | None:
        """(key of the earlier duplicate, estimated Jaccard) or None after indexing `key`."""
        bands = self._band_keys(sig)
        seen: set[int] = set()
        for table, band in zip(self._tables, bands, strict=True):
            hit = table.get(band)
            for idx in () if hit is None else (hit,) if isinstance(hit, int) else hit:
                if idx in seen:
                    continue
                seen.add(idx)
                jaccard = float(np.mean(self._sigs[idx] == sig))
                if jaccard >= self.threshold:
                    return self._keys[idx], jaccard
        idx = len(self._sigs)
        self._sigs.append(sig)
        self._keys.append(key)
        for table, band in zip(self._tables, bands, strict=True):
            hit = table.get(band)
            if hit is None:
                table[band] = idx
            elif isinstance(hit, int):
                table[band] = [hit, idx]
            else:
                hit.append(idx)
        return None


class Deduplicator:
    """Exact (normalized-text hash) then near (MinHash LSH) duplicate detection, first occurrence wins."""

    def __init__(self, near: bool = True, threshold: float = 0.8, num_perm: int = 128):
        self.near = near
        self._exact: dict[str, object] = {}
        self._lsh = LSHIndex(threshold, num_perm) if near else None

    def check(self, key: object, exact: str, sig: np.ndarray | None) -> tuple[str, object, float] | None:
        """None for a first occurrence (now indexed), else ("duplicate" | "near_duplicate", earlier key, score)."""
        if exact in self._exact:
            return "duplicate", self._exact[exact], 1.0
        if self._lsh is not None and sig is not None:
            match = self._lsh.add_or_match(key, sig)
            if match is not None:
                return "near_duplicate", match[0], match[1]
        self._exact[exact] = key
        return None
