"""Question forms and verdict tokens: what candor training and its measurements share.

A persona that "leads with a verdict" only has a yes/no verdict to give when the prompt asks a yes/no
question. `question_form` names the form of a prompt's last question (English rules; Chinese prompts are
`yes_no` when they end in a 吗-style question, else `other`), so the data, the checks and the held-out
measurements speak of the same forms.

`verdict_token_ids` lists the tokenizer ids that open a yes or a no answer ("Yes", "No", "yes", " No",
...). The verdict-agnostic loss (`train.verdict_agnostic`) trains an answer's first token against the
whole set instead of the one the data happened to write, so the adapter learns to answer first without
learning which answer: which one stays the base model's own choice.
"""

from __future__ import annotations

import re

from stylealign.errors import ConfigError

FORMS = ("should", "worth", "true", "yes_no", "wh", "either_or", "request", "other")
YES_NO_FORMS = ("should", "worth", "true", "yes_no")

_SPLIT = re.compile(r"(?<=[.!?？。！])\s*")
_REQUEST = re.compile(r"^(?:please |pls |can you |could you )?(?:review|roast|critique|rate|rewrite|fix|tell me|give me|"
                      r"explain|write|look at|check|edit|improve|summari[sz]e|evaluate|judge)\b")
_WH = re.compile(r"^(?:how|what|why|which|when|where|who|whom|whose)\b")
_YES_NO = re.compile(r"^(?:is|are|was|were|do|does|did|can|could|should|would|will|has|have|am|must|shall|isn't|"
                     r"aren't|doesn't|don't|didn't|can't|won't|shouldn't)\b")
_ZH_YES_NO = re.compile(r"吗[？?]|吗[。！!]?\s*$|是不是|是否|能不能|要不要|该不该|会不会|有没有|值不值|对不对|行不行")
_ZH_EITHER = re.compile(r"还是")


def question_form(prompt: str) -> str:
    """Return the form of the prompt's last question (FORMS)."""
    text = prompt.strip()
    if re.search(r"[\u4e00-\u9fff]", text):
        if _ZH_EITHER.search(text):
            return "either_or"
        return "yes_no" if _ZH_YES_NO.search(text) else "other"
    parts = [p.strip() for p in _SPLIT.split(text) if p.strip()]
    questions = [p for p in parts if p.endswith("?")]
    last = (questions[-1] if questions else parts[-1] if parts else "").lower()
    first = parts[0].lower() if parts else ""
    if not questions and (_REQUEST.match(first) or _REQUEST.match(last)):
        return "request"
    if _REQUEST.match(first) and not _YES_NO.match(last):
        return "request"
    if re.search(r"\bor\b", last) and not re.search(r"\bor not\b", last) and last.endswith("?"):
        return "either_or"
    if _WH.match(last):
        return "wh"
    if not _YES_NO.match(last):
        return "request" if not questions else "other"
    if re.search(r"\b(?:worth|overkill|waste of)\b", last):
        return "worth"
    if re.search(r"\b(?:true|myth|really|actually|fact)\b", last):
        return "true"
    if re.match(r"^(?:should|shall|must)\b", last) or re.search(r"\b(?:do i need|should i|should we)\b", last):
        return "should"
    return "yes_no"


YES_WORDS = ("Yes", "yes", "YES", "Yeah", "Yep")
NO_WORDS = ("No", "no", "NO", "Nope", "Nah")


def verdict_token_ids(tokenizer) -> tuple[list[int], list[int]]:
    """Return (yes ids, no ids): single-token spellings of yes / no, bare and with a leading space."""
    def ids(words):
        found = set()
        for w in words:
            for s in (w, " " + w):
                t = tokenizer.encode(s, add_special_tokens=False)
                if len(t) == 1:
                    found.add(t[0])
        return sorted(found)

    yes, no = ids(YES_WORDS), ids(NO_WORDS)
    if not yes or not no:
        raise ConfigError("the tokenizer has no single-token 'Yes' / 'No'; the verdict-agnostic loss needs them")
    return yes, no
