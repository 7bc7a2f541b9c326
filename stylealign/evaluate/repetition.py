"""Repetition and degeneration: repeated n-gram share, distinct-n, and loop detection."""

from __future__ import annotations

import re
from collections import Counter

from stylealign.evaluate.text import normalize, sentences, tokens


def ngrams(toks: list[str], n: int) -> list[tuple[str, ...]]:
    """Return the list of n-grams (tuples) of `toks`."""
    return [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]


def repeated_share(toks: list[str], n: int = 3) -> float:
    """Return the share of n-grams that repeat an earlier one (0 = no repetition); nan if none."""
    grams = ngrams(toks, n)
    return (len(grams) - len(set(grams))) / len(grams) if grams else float("nan")


def distinct(toks: list[str], n: int) -> float:
    """Return distinct-n: unique n-grams / all n-grams (1 = no repetition); nan if none."""
    grams = ngrams(toks, n)
    return len(set(grams)) / len(grams) if grams else float("nan")


def degenerate_reason(text: str, language: str) -> str | None:
    """Return why `text` looks degenerate ("empty", "repeated_sentence", "ngram_loop"), or None.

    A sentence of 4+ tokens said twice, or a 4-gram said 4+ times (a loop), is degenerate;
    both are classic failure modes of small or over-trained models.
    """
    toks = tokens(text, language)
    if not toks:
        return "empty"
    sents = [normalize(s) for s in sentences(text) if len(tokens(s, language)) >= 4]
    sents = [re.sub(r"[\W_]+$", "", s) for s in sents]
    if any(c >= 2 for c in Counter(sents).values()):
        return "repeated_sentence"
    if any(c >= 4 for c in Counter(ngrams(toks, 4)).values()):
        return "ngram_loop"
    return None


def repetition_features(text: str, language: str) -> dict[str, float]:
    """Return rep3_share, distinct1, distinct2 and degenerate (0/1) for `text`."""
    toks = tokens(text, language)
    return {
        "rep3_share": repeated_share(toks, 3),
        "distinct1": distinct(toks, 1),
        "distinct2": distinct(toks, 2),
        "degenerate": float(degenerate_reason(text, language) is not None),
    }
