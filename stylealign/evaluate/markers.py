"""L0 style markers: model-free, per-answer features in both languages.

Rates are per 100 English words or per 1,000 Chinese characters, chosen by the answer's own
language (a 135M model often answers a Chinese prompt in English; we score what it wrote).
"""

from __future__ import annotations

import math
import re
import statistics

from stylealign.evaluate.lexicon import load_lexicon
from stylealign.evaluate.repetition import repetition_features
from stylealign.evaluate.text import normalize, sentences, tokens
from stylealign.evaluate.verdict import parse_verdict
from stylealign.text import detect_language, length_units

RATE_SCALE = {"en": 100.0, "zh": 1000.0}
_LIST_LINE = re.compile(r"^\s*(?:[-*•·]|\d+[.)、])\s+", re.M)
_MARKDOWN = re.compile(r"^\s*#{1,6}\s|\*\*|__|```|^\s*\|.*\|\s*$|^\s*>\s", re.M)

# Metric name -> (description, unit, which direction the persona wants). Used by the report.
MARKER_METRICS = {
    "length": ("answer length", "words (en) / Han characters (zh)", "neutral"),
    "hedge_rate": ("hedges", "per 100 words / 1,000 chars", "lower"),
    "boilerplate_rate": ("boilerplate fillers & disclaimers", "per 100 words / 1,000 chars", "lower"),
    "booster_rate": ("boosters", "per 100 words / 1,000 chars", "higher"),
    "assertiveness": ("boosters / (boosters + hedges)", "share", "higher"),
    "verdict_first": ("first sentence takes a position", "share", "higher"),
    "sent_len_mean": ("mean sentence length", "tokens", "neutral"),
    "sent_len_cv": ("sentence-length coefficient of variation", "ratio", "neutral"),
    "list_items": ("list items", "count", "lower"),
    "markdown": ("markdown marks (headings, bold, code, tables)", "count", "neutral"),
    "asks_back": ("asks the user a question", "share", "neutral"),
    "rep3_share": ("repeated 3-gram share", "share", "lower"),
    "distinct1": ("distinct-1", "ratio", "neutral"),
    "distinct2": ("distinct-2", "ratio", "higher"),
    "degenerate": ("degenerate answer (repeated sentence / n-gram loop / empty)", "share", "lower"),
}


def rate(count: int, units: int, language: str) -> float:
    """Return `count` per 100 words (en) / 1,000 Han characters (zh); nan when the text is empty."""
    return count * RATE_SCALE.get(language, 100.0) / units if units else float("nan")


def lexicon_counts(text: str, language: str) -> dict[str, int]:
    """Return how many hedges, boosters and boilerplate fillers `text` holds (lexicon matches)."""
    norm = normalize(text)
    return {k: load_lexicon(k, language).count(norm, normalized=True) for k in ("hedges", "boosters", "boilerplate")}


def lexicon_rates(text: str, language: str) -> dict[str, float]:
    """Return hedge/boilerplate/booster rates and assertiveness for `text` in `language`."""
    counts, units = lexicon_counts(text, language), length_units(text, language)
    h, b = counts["hedges"], counts["boosters"]
    return {
        "hedge_rate": rate(h, units, language),
        "boilerplate_rate": rate(counts["boilerplate"], units, language),
        "booster_rate": rate(b, units, language),
        "assertiveness": b / (h + b) if h + b else float("nan"),
    }


def sentence_stats(text: str, language: str) -> dict[str, float]:
    """Return the mean sentence length (tokens) and its coefficient of variation (nan if < 2 sentences)."""
    lengths = [len(tokens(s, language)) for s in sentences(text)]
    lengths = [n for n in lengths if n]
    mean = statistics.fmean(lengths) if lengths else float("nan")
    cv = statistics.pstdev(lengths) / mean if len(lengths) >= 2 and mean else float("nan")
    return {"sent_len_mean": mean, "sent_len_cv": cv}


def layout_features(text: str) -> dict[str, float]:
    """Return list-item and markdown-mark counts, and whether any sentence asks the user a question."""
    asks = any(s.rstrip(" \"'”)").endswith(("?", "？")) for s in sentences(text))
    return {
        "list_items": float(len(_LIST_LINE.findall(text))),
        "markdown": float(len(_MARKDOWN.findall(text))),
        "asks_back": float(asks),
    }


def style_markers(text: str, language: str | None = None) -> dict[str, float]:
    """Return every L0 marker (the keys of MARKER_METRICS) for one answer.

    `language` defaults to the language detected in `text`. Undefined values are nan (e.g. the
    sentence-length CV of a one-sentence answer), and the statistics skip them.
    """
    lang = language or detect_language(text)
    out = {"length": float(length_units(text, lang))}
    out.update(lexicon_rates(text, lang))
    out["verdict_first"] = float(parse_verdict(text) != "none")
    out.update(sentence_stats(text, lang))
    out.update(layout_features(text))
    out.update(repetition_features(text, lang))
    assert set(out) == set(MARKER_METRICS), "keep MARKER_METRICS in sync"
    return {k: (v if not (isinstance(v, float) and math.isinf(v)) else float("nan")) for k, v in out.items()}
