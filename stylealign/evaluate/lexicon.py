"""Bilingual marker lexicons: load the data files in `lexicons/{en,zh}/*.txt` and count matches.

File format (UTF-8, one entry per line, `#` starts a comment line):
    term                      plain phrase; English matches at word boundaries, Chinese as a substring
    term  !look-alike !...    ... except where the match lies inside one of the `!` look-alikes
                              (e.g. `可能  !可能性 !不可能`: 可能 is a hedge, 可能性/不可能 are not)
    re:PATTERN                a Python regex over the normalised (lower-cased) text
Matches of one lexicon never overlap: the longest match wins, so "it depends" and "depends" count once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

from stylealign.evaluate.text import normalize

KINDS = ("hedges", "boosters", "boilerplate", "insults", "refusals")
LANGUAGES = ("en", "zh")


@dataclass(frozen=True)
class Entry:
    """One lexicon line compiled: the regex and the look-alikes that veto a match."""

    term: str
    pattern: re.Pattern
    exclude: tuple[re.Pattern, ...] = field(default=())


@dataclass(frozen=True)
class Lexicon:
    """A named list of entries for one language."""

    kind: str
    language: str
    entries: tuple[Entry, ...]

    def find(self, text: str, normalized: bool = False) -> list[tuple[int, int, str]]:
        """Return non-overlapping (start, end, term) matches in `text`, longest-first then leftmost."""
        text = text if normalized else normalize(text)
        spans = []
        for e in self.entries:
            vetoes = [m.span() for x in e.exclude for m in x.finditer(text)]
            for m in e.pattern.finditer(text):
                if m.end() > m.start() and not any(a <= m.start() and m.end() <= b for a, b in vetoes):
                    spans.append((m.start(), m.end(), e.term))
        spans.sort(key=lambda s: (-(s[1] - s[0]), s[0]))
        taken: list[tuple[int, int, str]] = []
        for s in spans:
            if all(s[1] <= t[0] or s[0] >= t[1] for t in taken):
                taken.append(s)
        return sorted(taken)

    def count(self, text: str, normalized: bool = False) -> int:
        """Return the number of matches of this lexicon in `text`."""
        return len(self.find(text, normalized))

    def terms(self) -> list[str]:
        """Return the entry terms (as written in the file)."""
        return [e.term for e in self.entries]


def _literal(term: str, language: str) -> re.Pattern:
    """Compile a plain phrase: flexible spaces; word boundaries for English-like terms."""
    body = r"\s+".join(re.escape(w) for w in term.split())
    if language == "en" or re.fullmatch(r"[a-z0-9 '\-]+", term):
        body = rf"(?<![a-z0-9']){body}(?![a-z0-9])"
    return re.compile(body)


def parse_line(line: str, language: str) -> Entry | None:
    """Return the Entry for one lexicon file line, or None for blanks and comments."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    if line.startswith("re:"):
        return Entry(line, re.compile(line[3:].strip()))
    term, *vetoes = (normalize(p) for p in line.split("!"))
    excl = [v for v in vetoes if v]
    return Entry(term, _literal(term, language), tuple(_literal(x, language) for x in excl))


def parse_lexicon(text: str, kind: str, language: str) -> Lexicon:
    """Return a Lexicon built from the text of a lexicon file."""
    entries = [e for e in (parse_line(ln, language) for ln in text.splitlines()) if e]
    return Lexicon(kind, language, tuple(entries))


@lru_cache(maxsize=None)
def load_lexicon(kind: str, language: str) -> Lexicon:
    """Return the packaged lexicon `lexicons/<language>/<kind>.txt` (cached)."""
    if language not in LANGUAGES:
        language = "en"
    path = resources.files("stylealign.evaluate") / "lexicons" / language / f"{kind}.txt"
    return parse_lexicon(path.read_text(encoding="utf-8"), kind, language)
