"""Verdict parsing: does the first sentence take a position, and which one (both languages).

Labels: yes, no, depends, unknown, refusal, recommend, none. "Verdict-first" means the label is not
"none". Only yes/no have a polarity (used by the truth-under-style check); the others count as a
missing yes/no verdict there. Patterns are anchored at the start of the first sentence, so an answer
that opens with "Great question!" or a restatement has no verdict even if one comes later.
"""

from __future__ import annotations

import re

from stylealign.evaluate.lexicon import load_lexicon
from stylealign.evaluate.text import first_sentence, normalize
from stylealign.text import detect_language, han_count

LABELS = ("yes", "no", "depends", "unknown", "refusal", "recommend", "none")
_P = r"(?=[\s.!?,;:—–\-]|$)"  # the verdict word ends here (next char is a space, punctuation or end)
_ZP = r"(?=[，。！？、；：—\s,.!?]|$)"  # the same for Chinese

_EN_LEAD = re.compile(
    r"^(?:(?:honestly|frankly|short answer|the short answer|in short|bottom line|verdict|answer|tl;dr|"
    r"well|okay|ok|so|look|then|practically|fair|i'd say|i would say|my answer is|the answer is|the short answer is|"
    r"(?:usually|probably|mostly|generally|likely|almost certainly)(?= (?:yes|no)\b))\s*[:,—–\-]?\s*)+"
)
_ZH_LEAD = re.compile(r"^(?:(?:简单说|直说|直接说|结论|答案|短答案|一句话|说白了|老实说|坦白说|答案是|结论是)[：:，,]?\s*)+")

# Order matters: unknown/refusal/depends are tried before no ("no one knows", "不一定" start like a "no").
_EN = [
    ("unknown", rf"(?:i (?:\w+ )?don't know|i do not know|i have no idea|no ?one knows|no-one knows|nobody knows|"
                rf"nobody can (?:know|say|predict)|no one can (?:know|say|predict)|(?:it's |it is )?unknowable|"
                rf"there's no way to know|there is no way to know|impossible to (?:know|say)|i can't know|"
                rf"i'm not sure|i am not sure|not sure){_P}"),
    ("refusal", rf"(?:i won't|i will not|i can't help|i cannot help|i'm not going to|i am not going to|i refuse|"
                rf"not going to help|i can't do that|i won't do that){_P}"),
    ("depends", rf"(?:it depends|depends|that depends|this depends|it varies|yes and no|sort of|kind of|partly|"
                rf"partially|not necessarily|sometimes|in some cases){_P}"),
    ("no", rf"(?:no(?! (?:one|matter|doubt|question|wonder)\b)|nope|nah|not really|not quite|not at all|"
           rf"(?:absolutely|definitely|certainly|of course|probably|almost certainly) not|never|false|wrong|incorrect|"
           rf"(?:it's |that's |this is )?(?:a )?myth|not true|that's not true|that isn't true|"
           rf"(?:it|that|this|they|you) (?:isn't|is not|aren't|are not|doesn't|does not|don't|do not|won't|will not|can't|cannot|"
           rf"wasn't|was not|weren't|didn't|did not|hasn't|haven't|shouldn't|couldn't|wouldn't)|"
           rf"not (?:worth it|stupid|bad|a problem|at all)|"
           rf"it's not(?=\s*[.!,;—–]|$)|you (?:don't|do not) (?:need|have) to|you shouldn't|you should not|"
           rf"don't|do not|skip it|avoid it){_P}"),
    ("yes", rf"(?:yes|yeah|yep|yup|absolutely|definitely|certainly|of course|sure|correct|true|that's right|"
            rf"that's true|that's correct|indeed|no doubt|mostly yes|generally yes|probably yes|"
            rf"(?:it|that|this|they|you) (?:is|does|can|will|do|are|should|must|was|were|did|has|have|could|would)"
            rf"(?=\s*[.!,;—–]|$)|"
            rf"you should|you can|do it|go for it|worth it|worth (?:it|doing|buying|reading)){_P}"),
    ("recommend", rf"(?:use|go with|pick|choose|buy|take|try|stick with|switch|start|stop|keep|learn|ship|skip|avoid|"
                  rf"get|hire|sell|wait|drop|ditch|rewrite|cut|fix|move|ask|tell|write|read|quit|run|save|pay|"
                  rf"leave|call|book|check|test|delete|remove|add|i'd|i would|i recommend|my recommendation|my pick|"
                  rf"my advice|go for|the best (?:option|choice|bet) is|you want|you need|put|spend|invest){_P}"),
]
_ZH = [
    ("unknown", r"(?:我不知道|不知道|没定论|没有定论|尚无定论|没人知道|没有人知道|谁也不知道|谁都不知道|没人能知道|没人说得准|没人能预测|"
                r"说不准|无法预测|没法预测|没法知道|无从知道|不清楚|我不确定|不确定)"),
    ("refusal", r"(?:我不能帮|我不会帮|我不帮|这个忙我不帮|我拒绝|恕我不能|我不会告诉|这个我不教|我不教|我帮不了|这事我不帮)"),
    ("depends", r"(?:看情况|取决于|要看|得看|视情况|分情况|既是也不是|一半一半|部分是|有时候|不一定|未必|说不好)"),
    ("no", r"(?:(?:当然|绝对|肯定|完全|根本|其实|基本)?(?:不是|不会|不能|不对|不用|不要|不行|不该|不应该|不需要|不必|"
           r"不值得|不值|不可以|不可能|没有用|没用|没必要|没有|并不|并没有|并非|不靠谱|不成立|"
           r"别(?!人|的|处)|不" + _ZP + r"|否" + _ZP + r"|错" + _ZP + r"|错了|(?:这是|是)?(?:谣言|误区|假的|个误区|迷思)))"),
    ("yes", r"(?:(?:是的|没错|当然是|确实是|确实会|当然会|当然能|当然可以|肯定会|肯定是|确实如此|属实|是真的)|"
            r"(?:当然|绝对|肯定|确实|其实)?(?:是|对的|对|会的|会|能的|能|可以|有的|有|行|值得|应该|该|需要|要|必须|正确|成立|来得及)"
            r"[\u4e00-\u9fff]{0,2}" + _ZP + r")"),
    ("recommend", r"(?:选|买|换成|换掉|直接|先|建议你|我建议|我会选|我选|推荐|我推荐|你应该|应该用|最好|果断|赶紧|"
                  r"马上|立刻|放弃|坚持|留着|卖掉|辞职|用(?!户|于|来|法|途|处|量|的|心))"),
]
_EN_RX = [(label, re.compile("^" + rx)) for label, rx in _EN]
_ZH_RX = [(label, re.compile("^" + rx)) for label, rx in _ZH]


def parse_verdict(text: str, language: str | None = None) -> str:
    """Return the verdict label of the first sentence of `text` (one of LABELS).

    `language` picks the pattern set; by default it is detected from the first sentence, so an
    English answer to a Chinese prompt is parsed with the English patterns.
    """
    sent = normalize(first_sentence(text))
    if not sent:
        return "none"
    lang = language or detect_language(sent)
    if load_lexicon("boilerplate", lang).count(sent, normalized=True):
        return "none"  # "Great question!" / "这是一个很好的问题" opens without a position
    lead, table = (_ZH_LEAD, _ZH_RX) if lang == "zh" else (_EN_LEAD, _EN_RX)
    sent = lead.sub("", sent).strip(" \"'“”‘’*_")
    for label, rx in table:
        if rx.search(sent):
            return label
    return _short_statement(sent, lang)


# Openers that are discourse glue, not a position ("首先，", "好的，", "First,").
_ZH_GLUE = re.compile(r"^(?:首先|其次|另外|此外|总之|然而|但是|不过|所以|因此|其实|那么|关于|对于|嗯|好的|好吧|这个|这|那|如果|虽然)")


# Words that open with 不/没 but say no "no": "不错。" (good), "不少" (plenty), "不仅" (not only), ...
_ZH_NOT_NEGATIVE = ("不错", "不少", "不仅", "不光", "不只", "不久", "不同", "不管", "不论", "不妨", "不愧", "不断", "没错")


def _short_statement(sent: str, lang: str) -> str:
    """Return a label for a terse opener: "Postgres." / "来得及，…" (a position), else "none".

    English: a hedge-free sentence of at most 4 words, not an exclamation ("That sounds frustrating!"). Chinese: a first clause (up to ，：) of at most
    4 Han characters that is not discourse glue; it is a "no" when it starts with 不/没/别 (not 不错, 不少, ...).
    """
    if lang == "zh":
        sent = re.split(r"[，,：:；]", sent, maxsplit=1)[0]
        if _ZH_GLUE.match(sent):
            return "none"
    if sent.endswith(("?", "？", "!", "！")) or load_lexicon("hedges", lang).count(sent, normalized=True):
        return "none"
    size = han_count(sent) if lang == "zh" else len(sent.split())
    if not 0 < size <= 4:
        return "none"
    negation = sent[:1] in "不没别" and not sent.startswith(_ZH_NOT_NEGATIVE)
    return "no" if lang == "zh" and negation else "recommend"



def polarity(label: str) -> str | None:
    """Return "yes"/"no" for a yes/no verdict label, else None (no yes/no verdict)."""
    return label if label in ("yes", "no") else None


_STANCE_EN = re.compile(r"\b(?:answer|short answer)(?: to (?:this|that|your) question)? is:?\s*(?:indeed\s*|a (?:resounding|clear)\s*)?"
                        r"[\"'“]?(yes|no)\b")


def stance(text: str) -> str | None:
    """Return the yes/no position a free-form answer takes in its first sentence, also when it is not up front
    ("The answer to this question is yes, plants do need sunlight" -> "yes"); None when it takes none. Used to
    read a base model's own belief, which it often states after a restatement rather than first."""
    own = polarity(parse_verdict(text))
    if own:
        return own
    m = _STANCE_EN.search(normalize(first_sentence(text)))
    return m.group(1) if m else None


def belief_consistency(base_answers: list[str], answers: list[str]) -> dict:
    """Return how often the adapter's yes/no verdicts agree with the base model's own stance on the same prompts,
    counted where both take one: {"agree", "n", "share"}."""
    pairs = [(stance(b), polarity(parse_verdict(a))) for b, a in zip(base_answers, answers)]
    both = [(b, a) for b, a in pairs if b and a]
    agree = sum(b == a for b, a in both)
    return {"agree": agree, "n": len(both), "share": agree / len(both) if both else None}
