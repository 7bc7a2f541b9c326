"""Text rules shared by the whole kit: which language a text is in, its length, and tables.

Language: the CJK share of a text is CJK characters / (CJK characters + Latin words), leaving out
code (fenced, inline, or unfenced lines without CJK that look like code) and URLs. A Latin word
counts as one unit, like one Chinese character: counting letters would let a product name in a
Chinese prompt outvote the Chinese. A text is Chinese when CJK is most of it (over 50%); a row
labelled English may quote a Chinese term, so it only has to stay at or under 25%.

Length: English words, or Han characters for Chinese. It is the unit of the style-marker rates
(per 100 English words, per 1,000 Chinese characters) and of the data card's length tables.
"""

from __future__ import annotations

import re
from typing import Sequence

# Han ideographs: CJK unified (incl. extension A and B-F planes) and compatibility ideographs.
HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")
WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)*")
ZH_MIN_SHARE = 0.5
EN_MAX_CJK_SHARE = 0.25  # "What does 内卷 mean in a job ad?" is 22% CJK and still an English row

_LATIN_WORD = re.compile(r"[A-Za-z]+")
_CODE = re.compile(r"```.*?```|`[^`\n]*`|https?://\S+", re.S)  # code and URLs are not prose


def han_count(text: str) -> int:
    """Return the number of Han (Chinese) characters in `text`."""
    return len(HAN.findall(text))


def cjk_share(text: str) -> float:
    """Return CJK characters / (CJK characters + Latin words) in the prose of `text` (0.0 when empty)."""
    prose = "\n".join(line for line in _CODE.sub(" ", text).splitlines() if not _looks_like_code(line))
    cjk, latin = han_count(prose), len(_LATIN_WORD.findall(prose))
    return cjk / (cjk + latin) if cjk + latin else 0.0


def _looks_like_code(line: str) -> bool:
    """Return True for a line with no CJK that is indented or has code punctuation: unfenced code
    pasted into a Chinese prompt must not count as English."""
    return not HAN.search(line) and bool(re.match(r"\s{2,}\S", line) or re.search(r"[(){}\[\]=;<>]", line))


def detect_language(text: str) -> str:
    """Return "zh" when CJK is most of the prose of `text`, else "en" (also for empty text)."""
    return "zh" if cjk_share(text or "") > ZH_MIN_SHARE else "en"


def language_problem(text: str, language: str | None) -> str | None:
    """Return why `text` does not look like `language` ("zh": CJK is most of the text; "en": at most
    EN_MAX_CJK_SHARE of it), or None when it matches or the language is not one we can check."""
    share = cjk_share(text)
    if language == "zh" and share <= ZH_MIN_SHARE:
        return f"labelled 'zh' but only {share:.0%} of the text is CJK"
    if language == "en" and share > EN_MAX_CJK_SHARE:
        return f"labelled 'en' but {share:.0%} of the text is CJK"
    return None


def length_units(text: str, language: str | None) -> int:
    """Return the length of `text` in its language's unit: Han characters for "zh", else words."""
    return han_count(text) if language == "zh" else len(WORD.findall(text))


def table(head: Sequence[str], rows: Sequence[Sequence], markdown: bool = True, title: str = "") -> str:
    """Return `rows` under `head` as a GitHub Markdown table (cells' "|" escaped) or aligned plain text;
    a `title` goes above it ("### title" in Markdown). No rows gives one "(none)" row."""
    cells = [[str(c) for c in row] for row in rows] or [["(none)"] + [""] * (len(head) - 1)]
    top = ([f"### {title}", ""] if markdown else [title]) if title else []
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(top + lines + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells])
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    return "\n".join(top + lines + [fmt.format(*row).rstrip() for row in cells])


def plain_turns(turns, drop_system: bool = False) -> list[dict]:
    """Return a conversation's turns as bare {"role", "content"} dicts (a row's extra keys dropped, as chat
    templates and TRL expect), without system turns when asked."""
    return [{"role": t["role"], "content": t["content"]} for t in turns if not (drop_system and t.get("role") == "system")]
