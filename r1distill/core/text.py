"""Text constants and regexes shared by the filter checks, dedup and grading: one definition of what a script, a
paragraph and a fenced code block are, so two stages can never disagree about them.

`SCRIPT_RANGES` are regex character-class bodies (no brackets) per script; `CJK` is Han + kana + Hangul syllables.
"""

from __future__ import annotations

import re

SCRIPT_RANGES = {
    "han": "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff",
    "kana": "\u3040-\u30ff\u31f0-\u31ff",
    "hangul": "\uac00-\ud7af\u1100-\u11ff\u3130-\u318f",
    "cyrillic": "\u0400-\u04ff",
    "greek": "\u0370-\u03ff",
    "arabic": "\u0600-\u06ff\u0750-\u077f",
    "hebrew": "\u0590-\u05ff",
    "devanagari": "\u0900-\u097f",
    "thai": "\u0e00-\u0e7f",
    "latin": "A-Za-z\u00c0-\u024f\u1e00-\u1eff",
}
# Characters that carry about three Latin letters' worth of text each (no spaces between words).
CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af"
CJK_CHAR = re.compile(f"[{CJK}]")

# A blank line (possibly holding spaces) separates paragraphs.
PARAGRAPH_BREAK = re.compile(r"\n\s*\n")

# A fenced code block: opening ``` or ~~~ (indented up to any depth), an optional language tag, the body, and the
# closing line with the same marker. Groups: `fence`, `lang`, `body`.
FENCE = re.compile(
    r"^[ \t]*(?P<fence>```|~~~)[ \t]*(?P<lang>[\w+#.-]*)[^\n]*\n(?P<body>.*?)^[ \t]*(?P=fence)[^\n]*$",
    re.M | re.S,
)


_NOT_CJK_LEAD = bytes(b for b in range(256) if not 0xE3 <= b <= 0xED)


def may_have_cjk(text: str) -> bool:
    """False when `text` surely holds no `CJK` character: none of the UTF-8 lead bytes of U+3000..U+DFFF (one C
    pass deleting every other byte), so the CJK regexes need not scan it."""
    return not text.isascii() and bool(text.encode("utf-8").translate(None, _NOT_CJK_LEAD))


def excerpt(text: str, start: int, end: int | None = None, limit: int = 300) -> tuple[str, int]:
    """(at most `limit` characters of `text` from `start`, the offset they begin at): the evidence a drop shows.

    A span longer than `limit` is cut at its start (where the defect begins); a short span is shown whole."""
    start = max(0, min(start, len(text)))
    end = len(text) if end is None else max(start, min(end, len(text)))
    return text[start : min(end, start + limit)], start
