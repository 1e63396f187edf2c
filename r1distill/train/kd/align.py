"""Teacher tokens -> student tokens, by text: which sidecar position holds the teacher's distribution for each token
the student is trained on.

The built assistant turn (`<think>\\n{reasoning}\\n</think>\\n\\n{answer}`) is not always the teacher's raw text: the
prefill was never sampled, and build strips and re-joins the whitespace around the tags. So both sides are turned
into byte spans (every token's bytes, concatenated: exact for byte-level BPE, no decoding round trips), the assistant
turn's anchors (the tags, the stripped reasoning and answer) are located in order in the teacher's sampled text, and
a student token gets the teacher's position only where both cover the same bytes of the same anchor (or of a
whitespace gap that is identical on both sides). Everything else gets no soft loss. The teacher's final end-of-turn
token, which has no text, is matched to the student's token right after the assistant text when the ids agree.
With the student sharing the teacher's tokenizer, nearly every assistant token aligns; `aligned / total` is reported.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_ANCHOR = re.compile(rb"</?think>")


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte <-> printable-character table, inverted (what byte-level BPE token strings are written in)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def special_ids(tok) -> set[int]:
    """Tokens that carry no text in a completion (the engine skips them when it detokenizes)."""
    ids = set(tok.all_special_ids)
    ids |= {i for i, t in tok.added_tokens_decoder.items() if t.special}
    return ids


def piece_table(tok) -> list[bytes]:
    """Each token id's bytes, so that a sequence's text is the concatenation of its tokens' pieces."""
    added = {i: t.content for i, t in tok.added_tokens_decoder.items()}
    dec = _byte_decoder()
    table = []
    for i, s in enumerate(tok.convert_ids_to_tokens(list(range(len(tok))))):
        if i in added:
            table.append(added[i].encode())
        elif s is None:
            table.append(b"")
        elif m := _BYTE_FALLBACK.match(s):
            table.append(bytes([int(m.group(1), 16)]))
        else:
            s = s.replace("\u2581", " ")
            table.append(bytes(dec[c] for c in s) if all(c in dec for c in s) else s.encode())
    return table


def spans(ids, table: list[bytes], skip: set[int] = frozenset()) -> tuple[bytes, np.ndarray]:
    """(text bytes, [n, 2] start/end per token); tokens in `skip` have empty spans and add no text."""
    pieces = [b"" if i in skip else table[i] for i in ids]
    ends = np.cumsum([len(p) for p in pieces], dtype=np.int64)
    starts = ends - np.array([len(p) for p in pieces], dtype=np.int64)
    return b"".join(pieces), np.stack([starts, ends], 1) if len(ids) else np.zeros((0, 2), np.int64)


def _anchors(content: bytes) -> list[tuple[int, int]]:
    """(start, end) of the tags and of each stripped text run between them, in order."""
    out, pos = [], 0
    for m in [*_ANCHOR.finditer(content), None]:
        end = m.start() if m else len(content)
        text = content[pos:end]
        core = text.strip()
        if core:
            lead = len(text) - len(text.lstrip())
            out.append((pos + lead, pos + lead + len(core)))
        if m:
            out.append((m.start(), m.end()))
            pos = m.end()
    return out


def char_map(teacher_text: bytes, content: bytes) -> np.ndarray:
    """For each byte of the teacher's text, the byte of `content` it is a copy of, or -1.

    Anchors of `content` are searched in order in the teacher's text (one that is absent, such as a prefilled
    `<think>`, is skipped); the whitespace between two found anchors maps too when it is the same on both sides.
    """
    out = np.full(len(teacher_text), -1, dtype=np.int64)
    cursor, prev = 0, None  # prev: (teacher end, content end) of the last anchor found
    for a0, a1 in _anchors(content):
        t0 = teacher_text.find(content[a0:a1], cursor)
        if t0 < 0:
            prev = None
            continue
        n = a1 - a0
        out[t0 : t0 + n] = np.arange(a0, a1)
        if prev is not None and teacher_text[prev[0] : t0] == content[prev[1] : a0]:
            out[prev[0] : t0] = np.arange(prev[1], a0)
        cursor, prev = t0 + n, (t0 + n, a1)
    if prev is not None and teacher_text[prev[0] :] == content[prev[1] :]:
        out[prev[0] :] = np.arange(prev[1], len(content))
    return out


def align(
    student_ids: list[int], content: str, teacher_ids, table: list[bytes], skip: set[int]
) -> tuple[np.ndarray, int]:
    """(src, n_target): src[j] = the teacher position whose distribution predicts student token j, or -1;
    n_target = the student tokens of the assistant text plus the one after it (the end-of-turn), i.e. those the
    teacher could cover. The last occurrence of `content` in the student's text is the trained assistant turn."""
    src = np.full(len(student_ids), -1, dtype=np.int32)
    s_text, s_spans = spans(student_ids, table)
    a = content.encode()
    off = s_text.rfind(a)
    if off < 0 or not a:
        return src, 0
    inside = np.nonzero((s_spans[:, 0] >= off) & (s_spans[:, 1] <= off + len(a)) & (s_spans[:, 1] > s_spans[:, 0]))[0]
    after = np.nonzero(s_spans[:, 0] == off + len(a))[0]
    n_target = len(inside) + (1 if len(after) else 0)
    t_ids = np.asarray(teacher_ids).tolist()
    t_text, t_spans = spans(t_ids, table, skip)
    cmap = char_map(t_text, a)
    by_span = {}
    for i, (t0, t1) in enumerate(t_spans.tolist()):
        if t1 > t0 and cmap[t0] >= 0 and cmap[t1 - 1] - cmap[t0] == t1 - 1 - t0:
            by_span[(int(cmap[t0]), int(cmap[t1 - 1]) + 1)] = i
    for j in inside.tolist():
        i = by_span.get((int(s_spans[j, 0]) - off, int(s_spans[j, 1]) - off))
        if i is not None and table[t_ids[i]] == table[student_ids[j]]:
            src[j] = i
    # The end-of-turn: the teacher stopped right where the assistant text ends, on the token the student trains on.
    if len(after) and t_ids and t_ids[-1] in skip and len(t_text) and cmap[-1] == len(a) - 1:
        j = int(after[0])
        if student_ids[j] == t_ids[-1]:
            src[j] = len(t_ids) - 1
    return src, n_target


def to_runs(src: np.ndarray) -> np.ndarray:
    """`src` as runs [start, teacher start, length] where it steps by one on both sides: a few runs per row (the
    prefill and whitespace gaps break them), so a million-row index stays small."""
    have = np.nonzero(src >= 0)[0]
    if not len(have):
        return np.zeros((0, 3), np.int32)
    vals = src[have]
    breaks = np.nonzero((np.diff(have) != 1) | (np.diff(vals) != 1))[0] + 1
    starts = np.concatenate([[0], breaks])
    lengths = np.diff(np.concatenate([starts, [len(have)]]))
    return np.stack([have[starts], vals[starts], lengths], 1).astype(np.int32)


def from_runs(runs: np.ndarray, length: int) -> np.ndarray:
    src = np.full(length, -1, dtype=np.int32)
    for s, t, n in runs.tolist():
        src[s : s + n] = np.arange(t, t + n)
    return src
