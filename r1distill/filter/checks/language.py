"""`language_mix`: the reasoning and the answer stay in the prompt's language, sentence by sentence.

A whole-text detector is blind here (langdetect calls a half-Chinese text English), so the judgement is local:

1. Mask what is no language: fenced and inline code, LaTeX, URLs, identifiers (snake_case, camelCase, dotted,
   with digits).
2. Split into sentences (Latin and CJK punctuation, line breaks) and count letters per script in each: Han, kana,
   Hangul, Cyrillic, Latin, ... A CJK character weighs about three Latin letters (`CJK_WEIGHT`); single letters
   (variables, Greek symbols) do not count.
3. A sentence is foreign when it carries at least `min_segment_units` letters of a script the text may not use.
   The text may use its own main script, any script the prompt itself uses substantially (quotes), and the script
   of a language the prompt names ("translate into Korean"). Latin words inside a CJK or Cyrillic sentence are
   tolerated (technical terms are written that way); a whole Latin sentence is not.
4. Same-script languages (English vs Vietnamese, Russian vs Ukrainian) go to langdetect, seeded for determinism,
   only where scripts cannot decide: the whole text when the prompt's Latin/Cyrillic language is not English, and
   paragraphs whose function words look like another language than the text's. English is recognised by its
   function words without a detector call, so an English corpus costs no langdetect time at all.

Reasons: `language_mismatch` (the text as a whole is in another language than allowed) and `language_mix`
(foreign sentences inside it).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

import numpy as np

from r1distill.core.records import Sample, Verdict
from r1distill.core.text import PARAGRAPH_BREAK as _PARAGRAPH
from r1distill.core.text import SCRIPT_RANGES as _RANGES
from r1distill.filter.checks import evidence, register
from r1distill.filter.checks.scripts import CJK_WEIGHT, ScriptTable, has_non_latin, script_units, sentences
from r1distill.filter.checks.scripts import SCRIPT_RX as _SCRIPT_RX

__all__ = ["CJK_WEIGHT", "language_mix", "mask", "script_units", "segment_report"]
_ASCII_WORD = re.compile(r"[A-Za-z]{2,}")
_has_non_latin = has_non_latin

# Script -> language family: kana makes Han Japanese; the names are what reports show.
LANG_OF_SCRIPT = {"han": "zh", "kana": "ja", "hangul": "ko", "cyrillic": "ru", "latin": "en"}

_MASK = re.compile(
    r"```.*?(?:```|\Z)|~~~.*?(?:~~~|\Z)|`[^`\n]*`"  # fenced and inline code
    r"|^[^\n]*[;{}][ \t]*$"  # code lines
    r"|^[ \t]*(?:def|class|import|from \S+ import|return|#include|public:|private:|protected:)[^\n]*$"
    r"|\$\$.*?\$\$|\$[^$\n]{0,2000}\$|\\\[.*?\\\]|\\\(.*?\\\)|\\begin\{(\w+\*?)\}.*?\\end\{\1\}"  # LaTeX
    r"|\\[A-Za-z]+|https?://\S+|www\.\S+"  # commands, URLs
    r"|(?<![A-Za-z])[A-Za-z]++[_0-9][A-Za-z0-9_]*|[_0-9][A-Za-z0-9_]*|(?<![a-z])[a-z]++[A-Z][A-Za-z]*"  # identifiers
    r"|(?<![A-Za-z_])[A-Za-z_]++(?:\.[A-Za-z_]++)+|(?<![A-Za-z_])[A-Za-z_]\w*+(?=[\[(]|\s*[-+*/]?=)"  # calls
    r"|(?<![A-Za-z])[A-Z]{2,}+s?(?![A-Za-z])",  # acronyms
    re.S | re.M,
)
# Written for speed, matching exactly what the plain forms (`[A-Za-z0-9_]*[_0-9]...`, `[a-z]+[A-Z]...`) would:
# possessive quantifiers never give back what could not let the next token match, and the lookbehinds skip the
# inner letters of a word, where the attempt would end where the one at the word's start ended, and fail alike.
# A prompt that names a language (translate into Korean) allows its script.
_LANG_NAMES = {
    "han": r"chinese|mandarin|cantonese|中文|汉语|漢語",
    "kana": r"japanese|日本語",
    "hangul": r"korean|한국어",
    "cyrillic": r"russian|ukrainian|bulgarian|serbian|русск|украї",
    "greek": r"greek",
    "arabic": r"arabic|persian|farsi|urdu",
    "hebrew": r"hebrew",
    "devanagari": r"hindi|marathi|nepali|sanskrit",
    "thai": r"thai\b",
}
_LANG_NAME_RX = {k: re.compile(v, re.I) for k, v in _LANG_NAMES.items()}
# The same names as plain substrings of the lowercased prompt (C-speed `in`); `thai` alone needs its word boundary.
_LANG_WORDS = {k: tuple(v.replace("\\b", "").split("|")) for k, v in _LANG_NAMES.items()}


def named_scripts(prompt: str) -> set[str]:
    """Scripts of the languages `prompt` names ("translate into Korean" -> hangul)."""
    low = prompt.lower()
    found = {k for k, words in _LANG_WORDS.items() if any(w in low for w in words)}
    if "thai" in found and not _LANG_NAME_RX["thai"].search(prompt):
        found.discard("thai")
    return found


_SENTENCE = re.compile(r"(?<=[.!?;:])\s+|(?<=[。！？；：])|\n+")
# Han-only sentences in Japanese are usually Japanese (headings, kanji compounds); they read as Chinese when they hold
# its function words or simplified-only characters, which Japanese text does not use (Japanese writes 们 as 達,
# 这 as この, 说 as 説, 时 as 時...). `的了是在不有` also occur in Japanese compounds, so they weigh half.
_ZH_STRONG = frozenset("们这个说对吗呢吧么没还让给过为时问应该实现样进开关边两从们她它很哪咱您啊呀嘛")
_ZH_WEAK = frozenset("的了是在不有和就也要")
_EN_STOP = frozenset(
    "the a an of to and in is it that this for on with as be are was we so but not if then or by at from can "
    "i you he she they me my our your its there their which what how when let have has do does would should "
    "will need think wait maybe also just now first next here one all any".split()
)

# Frequent function words of other Latin-script languages (es, fr, de, pt, it, nl, vi, id): an English text's
# paragraph is sent to the detector only when these outnumber English ones (lists and tables have neither).
_STOPS = {
    "es": "el la los las del que un una por para con es se más pero sus",
    "fr": "le les des et est une pour dans qui sur au du",
    "de": "der und das ist nicht ein eine zu mit von sich auf für dem",
    "pt": "uma não",
    "nl": "het een dat niet",
    "it": "che della",
    "vi": "và của là có không được cho những một các này với người trong để đã khi thì",
    "id": "yang dan ini itu dengan untuk tidak dari",
}
_OTHER_STOP = frozenset(" ".join(_STOPS.values()).split())
# Languages whose own function words are distinctive enough to name them without the detector (see `_by_stopwords`).
_OWN_STOP = {"vi": frozenset(_STOPS["vi"].split())}
_OTHER_STOP_BYTES = frozenset(w.encode("utf-8") for w in _OTHER_STOP)
# ASCII bytes that are no letter -> space: the words of a lowercased UTF-8 text are then its `split()`.
_NOT_LETTER = bytes(c for c in range(128) if not chr(c).isalpha())
_TO_SPACE = bytes.maketrans(_NOT_LETTER, b" " * len(_NOT_LETTER))
_NOT_ASCII_LETTER = bytes(c for c in range(256) if not (c < 128 and chr(c).isalpha()))
_ASCII_LETTERS_ONLY = bytes.maketrans(_NOT_ASCII_LETTER, b" " * len(_NOT_ASCII_LETTER))
_ACCENTED = re.compile(f"[{_RANGES['latin'][6:]}]")  # the Latin letters beyond A-Z and a-z


_COMMENT = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)


def mask(text: str) -> str:
    """`text` with code, LaTeX, URLs and identifiers replaced by spaces: what is left is natural language."""
    return _MASK.sub(" ", text)


def main_script(units: dict[str, float]) -> str | None:
    return max(units, key=units.__getitem__) if units else None


@functools.lru_cache(maxsize=1)
def _langdetect():
    from langdetect import DetectorFactory, detect_langs

    DetectorFactory.seed = 0  # langdetect is random without it
    return detect_langs


def detect(text: str, max_chars: int = 2000) -> tuple[str | None, float]:
    """(language code, probability) from seeded langdetect, or (None, 0) when it finds no features. Only the
    first `max_chars` characters are read: that decides a language as well as 10k does, at a fifth of the cost."""
    from langdetect.lang_detect_exception import LangDetectException

    try:
        best = _langdetect()(text[:max_chars])[0]
    except LangDetectException:
        return None, 0.0
    return best.lang, best.prob


@dataclass
class Target:
    """What a text may be written in: scripts (main + quoted) and, for Latin/Cyrillic, the language code."""

    scripts: set[str] = field(default_factory=set)
    lang: str | None = None


@functools.lru_cache(maxsize=4096)
def prompt_target(prompt: str, min_share: float = 0.2, min_units: float = 12) -> Target:
    """The prompt's language: every script with `min_share` of its letters (plus the script of a language it names,
    as in "translate into Korean"), and the detected language when its main script is Latin or Cyrillic and long
    enough to detect. An empty target (a prompt that is all code or numbers) constrains nothing."""
    masked = mask(prompt)
    units = script_units(masked) if masked.isascii() else ScriptTable(masked).units()
    if "latin" in units and len(units) > 1:
        # Beside another script, Latin licenses Latin prose only when the prompt has Latin prose itself: code,
        # its comments and mojibake leave identifiers and keywords, not sentences.
        prose = _latin_prose_units(masked)
        if prose:
            units["latin"] = prose
        else:
            del units["latin"]
    total = sum(units.values())
    named = named_scripts(prompt)
    if total < min_units:
        return Target(named)
    scripts = {s for s, n in units.items() if n >= min_share * total} | named
    main = main_script(units)
    lang = LANG_OF_SCRIPT.get(main) if main not in ("latin", "cyrillic") else None
    if main == "latin" and _plainly_english(masked, Target()):
        lang = "en"  # most prompts: no detector call needed
    elif main in ("latin", "cyrillic") and units[main] >= 20 and (main == "cyrillic" or _maybe_other_latin(masked)):
        found, prob = detect(masked)
        lang = found if found and prob >= 0.8 else None
    return Target(scripts, lang)


def _latin_prose_units(text: str) -> float:
    """Latin letters in the sentences of `text` that read as prose: two or more function words (any language's)."""
    n = 0.0
    for seg in _SENTENCE.split(_COMMENT.sub(" ", text)):
        words = _SCRIPT_RX["latin"].findall(seg)
        if sum(w.lower() in _EN_STOP or w.lower() in _OTHER_STOP for w in words) >= 2:
            n += sum(map(len, words))
    return n


def _maybe_other_latin(text: str) -> bool:
    """Worth a detector call: another language's function words, or diacritics (Polish, Turkish, Vietnamese...).
    Neither, and not plainly English either: code or data, whose language a detector would only guess."""
    head = text[:5000]
    if not _ACCENTED.search(head):
        # No accented letter: the Latin words are the runs of ASCII letters, and without one function word of
        # another language the answer is no (most English texts), found without a word list.
        words = head.lower().encode("utf-8").translate(_ASCII_LETTERS_ONLY).split()
        if not _OTHER_STOP_BYTES.intersection(words):
            return False
    words = _SCRIPT_RX["latin"].findall(head)
    if not words:
        return False
    letters = sum(map(len, words))
    accented = letters - sum(map(len, _ASCII_WORD.findall(text[:5000])))
    return _stop_share(words, _OTHER_STOP) >= 0.05 or accented >= 0.02 * letters


def reads_chinese(sentence: str) -> bool:
    """Whether a Han-only sentence reads as Chinese rather than Japanese kanji (see `_ZH_STRONG`)."""
    score = sum(1.0 if c in _ZH_STRONG else 0.5 if c in _ZH_WEAK else 0.0 for c in sentence)
    return score >= 1.5


def segment_report(
    masked: str, allowed: set[str], min_units: float, table: ScriptTable | None = None
) -> tuple[float, int, float, str | None]:
    """(foreign units, foreign sentences, total units, first foreign sentence) of a masked text against the allowed
    scripts; `table` is `ScriptTable(masked)` when the caller has it. All sentences are counted at once in numpy.

    Latin inside a sentence written in an allowed non-Latin script is tolerated when its words are short (math,
    acronyms) or make up less than half the sentence (technical terms such as `Q-learning算法`). In Japanese, a
    Han-only sentence is Japanese unless it reads as Chinese (`reads_chinese`)."""
    kanji_only = "kana" in allowed and "han" not in allowed  # Han is allowed only as Japanese kanji
    if "kana" in allowed:  # a kanji-only sentence is still Japanese
        allowed = allowed | {"han"}
    table = table or ScriptTable(masked)
    starts, ends = sentences(masked)
    units = table.counts(starts, ends)
    long_latin = units.pop("long_latin", None)
    zero = np.zeros(len(starts))
    seg_total = sum(units.values(), zero)
    bad = sum((n for s, n in units.items() if s not in allowed), zero)
    if "latin" in units and "latin" not in allowed:
        host = np.max([n for s, n in units.items() if s in allowed] or [zero], axis=0)
        bad = bad - units["latin"] + np.where(long_latin > 0.5 * host, long_latin, 0.0)
    if kanji_only and "han" in units:
        for i in np.flatnonzero((units["han"] > 0) & (units.get("kana", zero) == 0)).tolist():
            if reads_chinese(masked[starts[i] : ends[i]]):
                bad[i] += units["han"][i]
    foreign = (bad >= min_units) & (seg_total > 0)
    hits = np.flatnonzero(foreign)
    first = masked[starts[hits[0]] : ends[hits[0]]] if len(hits) else None
    return float(bad[foreign].sum()), len(hits), float(seg_total.sum()), first


def _stop_share(words: list[str], stop: frozenset[str] = _EN_STOP) -> float:
    return sum(map(stop.__contains__, map(str.lower, words))) / len(words)


def _foreign_paragraphs(text: str, allowed_langs: set[str], min_words: int, english: bool) -> list[tuple[str, str]]:
    """(language, paragraph) of Latin-script paragraphs that langdetect confidently places outside `allowed_langs`.

    Only suspicious paragraphs are asked, so most text costs no detector call: in an English text, those with few
    English stop words (another language, or code/maths, which masking then removes); in a text in another Latin
    language, those full of English stop words (the usual slip: a paragraph in English)."""
    found: list[tuple[str, str]] = []
    latin = _SCRIPT_RX["latin"]

    def suspicious(words: list[str]) -> bool:
        if len(words) < min_words:
            return False
        if english:
            return _stop_share(words) <= 0.12 and _stop_share(words, _OTHER_STOP) >= 0.1
        return _stop_share(words) >= 0.3

    if english and _other_stop_count(text) < 3:
        return found  # a suspicious paragraph holds three or more (a tenth of 25+ words): none in the whole text
    for para in _PARAGRAPH.split(text):
        if not suspicious(latin.findall(para)):
            continue
        para = mask(para)
        if not suspicious(latin.findall(para)):
            continue
        lang, prob = detect(para)
        if lang and prob >= 0.9 and lang not in allowed_langs:
            found.append((lang, para))
    return found


def _other_stop_count(text: str) -> int:
    """How many words of `text` are other languages' function words, counted at C speed (bytes translated,
    split, intersected): the whole-text bound that lets most English texts skip the per-paragraph word lists. Only a
    word glued to non-ASCII punctuation (`«la`) escapes the count."""
    words = text.lower().encode("utf-8").translate(_TO_SPACE).split()
    return sum(map(words.count, _OTHER_STOP_BYTES.intersection(words)))


def _by_stopwords(text: str, lang: str | None) -> str | None:
    """The language of a Latin text told by function words, where they are unambiguous: English (`_plainly_english`),
    or the prompt's language `lang` when its own function words are 6%+ of the words and English ones under 2%.
    None: only the detector can tell."""
    if _plainly_english(text, Target()):
        return "en"
    for name, own in _OWN_STOP.items() if lang is None else [(lang, _OWN_STOP.get(lang))]:
        if own is not None:
            words = _SCRIPT_RX["latin"].findall(text[:5000])
            if len(words) >= 12 and _stop_share(words, own) >= 0.06 and _stop_share(words) < 0.02:
                return name
    return None


def _plainly_english(text: str, target: Target) -> bool:
    """A Latin text full of English function words and free of other languages' ones, when the prompt gave no
    language: English, no detector call needed."""
    if target.lang is not None:
        return False
    words = _SCRIPT_RX["latin"].findall(text[:5000])
    return len(words) >= 12 and _stop_share(words) > 0.25 and _stop_share(words, _OTHER_STOP) < 0.03


def judge_text(
    text: str,
    target: Target,
    extra_langs: set[str],
    min_segment_units: float,
    max_foreign_segments: int,
    max_foreign_share: float,
) -> Verdict:
    """Verdict on one text (reasoning or answer) against the prompt's target (see the module docstring)."""
    # Fast path, most of an English corpus: no letter of another script anywhere, so nothing to mask or split.
    fast = text.isascii() or not has_non_latin(text)
    masked = text if fast else mask(text)
    table = None if fast else ScriptTable(masked)
    units = ({"latin": 1.0} if _SCRIPT_RX["latin"].search(text) else {}) if table is None else table.units()
    main = main_script(units)
    if main is None:
        return Verdict.ok()
    allowed_langs = ({target.lang} if target.lang else set()) | extra_langs
    if target.scripts and main not in target.scripts and LANG_OF_SCRIPT.get(main, main) not in allowed_langs:
        verdict = Verdict.drop("language_mismatch", script=main, expected=sorted(target.scripts))
        return _with_evidence(verdict, text, None, {"scripts": sorted(target.scripts), "langs": sorted(allowed_langs)})
    text_lang = LANG_OF_SCRIPT.get(main, main)
    # With no prompt language there is nothing to mismatch: a detector only decides whether a Latin text is English.
    unknown_english = target.lang is None and main == "latin" and not _maybe_other_latin(masked)
    if main in ("latin", "cyrillic") and target.lang != text_lang and not unknown_english:
        # Same script, other language (a Vietnamese prompt, or none detected): function words when unambiguous,
        # else only a detector can tell.
        plain = mask(masked) if fast else masked
        known = _by_stopwords(plain, target.lang) if main == "latin" else None
        lang, prob = (known, 1.0) if known else detect(plain)
        text_lang = lang if lang and prob >= 0.9 else text_lang
        if target.scripts and target.lang and lang and prob >= 0.9 and lang not in allowed_langs:
            how = {"by": "function words"} if known else {"prob": round(prob, 3)}
            verdict = Verdict.drop("language_mismatch", lang=lang, expected=target.lang, **how)
            return _with_evidence(verdict, text, None, {"langs": sorted(allowed_langs), "min_prob": 0.9})
    if not fast:
        bad, segments, total, first = segment_report(masked, {main} | target.scripts, min_segment_units, table)
        if segments > max_foreign_segments or (total and bad / total > max_foreign_share):
            share = round(bad / total, 4) if total else 0.0
            verdict = Verdict.drop("language_mix", foreign_sentences=segments, foreign_share=share)
            rule = {"scripts": sorted({main} | target.scripts), "min_segment_units": min_segment_units,
                    "max_foreign_segments": max_foreign_segments, "max_foreign_share": max_foreign_share}  # fmt: skip
            return _with_evidence(verdict, text, first, rule)
    if main == "latin":
        found = _foreign_paragraphs(masked, allowed_langs | {text_lang}, 25, english=text_lang == "en")
        if len(found) > max_foreign_segments:
            langs = sorted({lang for lang, _ in found})
            verdict = Verdict.drop("language_mix", foreign_paragraphs=len(found), langs=langs)
            rule = {"langs": sorted(allowed_langs | {text_lang}), "max_foreign_segments": max_foreign_segments}
            return _with_evidence(verdict, text, found[0][1], rule)
    return Verdict.ok()


def _with_evidence(verdict: Verdict, text: str, judged: str | None, rule: dict) -> Verdict:
    """Attach the evidence: where in `text` the `judged` (masked) sentence or paragraph is, else the text's start.

    Masking replaced code and identifiers by single spaces, so the sentence is found by its longest unmasked piece."""
    start = 0
    if judged is not None:
        pieces = sorted((p for p in re.split(r"\s{2,}| (?=\S)", judged.strip()) if p), key=len, reverse=True)
        whole = text.find(judged.strip())
        start = whole if whole >= 0 else next((i for i in map(text.find, pieces[:5]) if i >= 0), 0)
    verdict.evidence = evidence("", text, start, None, rule)
    if judged is not None:
        verdict.evidence["sentence"] = " ".join(judged.split())[:300]
    return verdict


def language_mix(
    sample: Sample,
    *,
    reasoning_languages: list[str] | tuple[str, ...] = (),
    check_answer: bool = True,
    min_segment_units: float = 6.0,
    max_foreign_segments: int = 0,
    max_foreign_share: float = 0.02,
    prompt_min_share: float = 0.2,
) -> Verdict:
    """Drop a sample whose reasoning or answer leaves the prompt's language.

    `reasoning_languages` lists languages the reasoning may use besides the prompt's (R1 often thinks in English
    about a Vietnamese or Russian prompt: `[en]` accepts that; the answer must still be in the prompt's language).
    A sentence counts as foreign from `min_segment_units` letters of a disallowed script (6 = two Han characters);
    the text drops with more than `max_foreign_segments` such sentences or a foreign share over `max_foreign_share`.
    """
    prompt = sample.problem or next((m["content"] for m in reversed(sample.messages) if m["role"] == "user"), "")
    target = prompt_target(prompt, prompt_min_share)
    p = sample.parsed
    parts = [("reasoning", p.reasoning, set(reasoning_languages))]
    if check_answer:
        parts.append(("answer", p.answer, set()))
    for part, text, extra in parts:
        verdict = judge_text(text, target, extra, min_segment_units, max_foreign_segments, max_foreign_share)
        if not verdict.keep:
            verdict.details["part"] = part
            if verdict.evidence is not None:
                verdict.evidence["part"] = part
            return verdict
    return Verdict.ok()


register("language_mix", language_mix)
