"""Evaluation tokenisation: normalisation, tokens, sentences (language, length units: stylealign.text).

English is tokenised into words; Chinese into Han characters (one token each), which is the unit
the style-marker rates use (per 100 English words, per 1,000 Chinese characters).
"""

from __future__ import annotations

import re
import unicodedata

from stylealign.text import HAN, WORD

# Sentence ends: Latin .!? (followed by space/end), CJK 。！？, ellipses, and line breaks.
_SENT_END = re.compile(r"(?<=[.!?])(?=\s|$)|(?<=[。！？])|(?<=…)|\n+")
_FULLWIDTH_ALNUM = re.compile(r"[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]+")
_QUOTES = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "\u00a0": " "})


def normalize(text: str) -> str:
    """Return `text` with full-width Latin letters/digits folded, straight quotes, single spaces, lower case.

    Chinese punctuation (，。？) is deliberately kept: it marks sentence ends and verdict boundaries.
    """
    text = _FULLWIDTH_ALNUM.sub(lambda m: unicodedata.normalize("NFKC", m.group()), text)
    return re.sub(r"[ \t]+", " ", text.translate(_QUOTES)).strip().lower()


def tokens(text: str, language: str) -> list[str]:
    """Return lower-cased word tokens (en) or Han characters plus Latin words (zh)."""
    text = normalize(text)
    if language == "zh":
        return re.findall(HAN.pattern + r"|[a-z0-9]+", text)
    return [w.replace("'", "") for w in WORD.findall(text)]


def strip_markdown(line: str) -> str:
    """Return `line` without leading list bullets, heading hashes, quote marks and emphasis."""
    line = re.sub(r"^\s*(?:[#>]+|[-*•·]|\d+[.)、])\s*", "", line)
    return line.replace("**", "").replace("__", "").strip(" \"'*_`")


def sentences(text: str) -> list[str]:
    """Return the non-empty sentences of `text` (markdown bullets stripped), in order."""
    parts = _SENT_END.split(text.strip())
    out = [strip_markdown(p) for p in parts if p and p.strip()]
    return [s for s in out if re.search(r"\w", s)]


def first_sentence(text: str) -> str:
    """Return the first sentence of `text`, or "" when there is none."""
    sents = sentences(text)
    return sents[0] if sents else ""
