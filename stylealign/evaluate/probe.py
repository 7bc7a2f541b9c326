"""The coherence probe: what a user sees when the adapter runs greedily, as llama.cpp, Ollama and vLLM
serve it at temperature 0 — no sampling, no repetition penalty, a stated token budget.

A sampled pass with a repetition penalty hides the two ways a small style adapter breaks: it loops,
and it collapses onto one opener ("No." to everything). The probe measures both, per answer, so the
evaluation can give each a baseline, an adapter value and a paired bootstrap CI:

- `probe_repetitive`: the answer repeats itself (`repetition_reason`, defined below);
- `probe_top_opener`: the answer begins with its model's single most common opener in that language;
- `probe_stopped`: the answer ended before the token budget (a model that never stops is looping
  or rambling);
- `probe_lang_mismatch`: the answer is not in the prompt's language;
- `probe_yes`: 1/0 for a yes/no verdict, nan otherwise: its mean is the yes-share of verdicts;
- style as the user sees it greedily: verdict-first, hedges + fillers, and the persona's own lexicon
  metrics (e.g. evasive openers).
"""

from __future__ import annotations

import math
import re
from collections import Counter

from stylealign.evaluate.repetition import ngrams
from stylealign.evaluate.text import first_sentence, normalize, sentences, tokens
from stylealign.evaluate.verdict import belief_consistency, parse_verdict, polarity
from stylealign.text import detect_language

DEFAULT_BUDGET = 160  # new tokens per probe answer, the same for baseline and adapter

PROBE_METRICS = {
    "probe_repetitive": ("greedy answer repeats itself (repeated sentence, n-gram loop, dense repeats, "
                         "or cut off while repeating)", "share", "lower"),
    "probe_top_opener": ("greedy answer opens with the model's most common opener (per language)", "share", "lower"),
    "probe_stopped": ("greedy answer ends before the token budget", "share", "higher"),
    "probe_lang_mismatch": ("greedy answer not in the prompt's language", "share", "lower"),
    "probe_yes": ("yes among the greedy yes/no verdicts (mean = yes-share)", "share", "neutral"),
    "probe_verdict_first": ("greedy answer's first sentence takes a position", "share", "higher"),
    "probe_hedge_fill": ("hedges + fillers in the greedy answer", "per 100 words / 1,000 chars", "lower"),
}
# The persona's own lexicon metrics (persona.yaml `lexicons:`, e.g. sharp-candid's evasive openers) are
# scored on the greedy answers too, as probe_<name> (evaluate/scoring.py, score_probe).

# Repetition thresholds (tokens are English words or Chinese characters, see text.tokens).
SENTENCE_MIN_TOKENS = 4   # a sentence this long said twice is a repeat
LOOP_NGRAM, LOOP_COUNT = 4, 3  # a 4-gram said three times is a loop
DENSE_SHARE, DENSE_MIN_TOKENS = 0.3, 12  # 30% of 3-grams repeating an earlier one
TAIL_TOKENS, TAIL_SHARE = 24, 0.2  # cut off while the last 24 tokens repeat themselves

def repetition_reason(text: str, language: str, cut_off: bool = False) -> str | None:
    """Return why `text` repeats itself, or None. In order of the checks:

    "repeated_sentence": a sentence of >= 4 tokens occurs twice (case, spacing and final punctuation ignored);
    "ngram_loop": some 4-gram occurs 3+ times;
    "dense_repeats": in an answer of >= 12 tokens, >= 30% of its 3-grams repeat an earlier 3-gram;
    "cut_off_repeating": the answer hit the token budget (`cut_off`) while >= 20% of the 3-grams of its
    last 24 tokens repeat an earlier one of that tail (a loop the budget interrupted).
    """
    toks = tokens(text, language)
    sents = [re.sub(r"[\W_]+$", "", normalize(s)) for s in sentences(text)
             if len(tokens(s, language)) >= SENTENCE_MIN_TOKENS]
    if any(c >= 2 for c in Counter(sents).values()):
        return "repeated_sentence"
    if any(c >= LOOP_COUNT for c in Counter(ngrams(toks, LOOP_NGRAM)).values()):
        return "ngram_loop"
    if len(toks) >= DENSE_MIN_TOKENS and _repeat_share(toks) >= DENSE_SHARE:
        return "dense_repeats"
    if cut_off and len(toks) >= TAIL_TOKENS and _repeat_share(toks[-TAIL_TOKENS:]) >= TAIL_SHARE:
        return "cut_off_repeating"
    return None


def _repeat_share(toks: list[str], n: int = 3) -> float:
    grams = ngrams(toks, n)
    return (len(grams) - len(set(grams))) / len(grams) if grams else 0.0


def opener(text: str, language: str) -> str:
    """Return an answer's opener: its first word (English) or first two Chinese characters; "" if empty."""
    toks = tokens(first_sentence(text) or text, language)
    if not toks:
        return ""
    if language == "zh" and len(toks[0]) == 1:
        return "".join(toks[:2])
    return toks[0]


def answer_features(answer: str, prompt_language: str, stopped: bool | None,
                    hedge_fill: float = math.nan) -> dict[str, float]:
    """Return one greedy answer's probe features (probe_top_opener is filled by `mark_top_openers`)."""
    empty = not answer.strip()
    lang = prompt_language if empty else detect_language(answer)
    verdict = parse_verdict(answer)
    yes = polarity(verdict)
    return {
        "probe_repetitive": float(repetition_reason(answer, lang, cut_off=stopped is False) is not None),
        "probe_top_opener": math.nan,
        "probe_stopped": math.nan if stopped is None else float(stopped),
        "probe_lang_mismatch": math.nan if empty else float(lang != prompt_language),
        "probe_yes": math.nan if yes is None else float(yes == "yes"),
        "probe_verdict_first": float(verdict != "none"),
        "probe_hedge_fill": hedge_fill,
    }


def mark_top_openers(answers: list[str], languages: list[str], features: list[dict]) -> dict[str, dict]:
    """Set each answer's probe_top_opener (1 when it opens with the most common opener of its language
    among these answers) and return {language: {"opener", "share", "n"}} for the report."""
    out = {}
    for lang in sorted(set(languages)):
        idx = [i for i, lg in enumerate(languages) if lg == lang]
        opens = [opener(answers[i], lang) for i in idx]
        counts = Counter(o for o in opens if o)
        top, hits = counts.most_common(1)[0] if counts else ("", 0)
        for i, o in zip(idx, opens):
            features[i]["probe_top_opener"] = float(bool(top) and o == top)
        out[lang] = {"opener": top, "share": hits / len(idx) if idx else None, "n": len(idx)}
    return out


def verdict_balance(answers: list[str], rows: list[dict]) -> dict:
    """Return the yes-share of yes/no verdicts on known-answer and on open yes/no prompts, with the
    right / wrong / no-verdict counts where the answer is known."""
    out = {}
    for name, pick in (("known_answer", lambda r: r.get("expected") in ("yes", "no")),
                       ("open_yes_no", lambda r: r.get("expected") is None and is_yes_no_question(_last_user(r)))):
        idx = [i for i, r in enumerate(rows) if pick(r)]
        given = [polarity(parse_verdict(answers[i])) for i in idx]
        verdicts = [g for g in given if g]
        block = {"n": len(idx), "verdicts": len(verdicts),
                 "yes_share": sum(g == "yes" for g in verdicts) / len(verdicts) if verdicts else None}
        if name == "known_answer":
            expected = [rows[i]["expected"] for i in idx]
            block.update(right=sum(g == e for g, e in zip(given, expected)),
                         wrong=sum(g is not None and g != e for g, e in zip(given, expected)),
                         no_verdict=sum(g is None for g in given))
        out[name] = block
    return out


_YES_NO_EN = re.compile(r"^(?:is|are|was|were|do|does|did|can|could|should|would|will|has|have|am|must|shall)\b")
_YES_NO_ZH = re.compile(r"吗[？?。！!]?\s*$|是不是|是否|能不能|要不要|该不该|会不会|有没有|值不值|对不对|行不行")


def is_yes_no_question(prompt: str) -> bool:
    """Return whether the prompt's last sentence is a yes/no question ("Is X worth it?", "……吗？")."""
    sents = [s for s in sentences(prompt) if s.strip()] or [prompt]
    last = normalize(sents[-1])
    if detect_language(last) == "zh":
        return last.rstrip().endswith(("？", "?")) and bool(_YES_NO_ZH.search(last))
    return last.rstrip().endswith("?") and bool(_YES_NO_EN.match(last))


def _last_user(row: dict) -> str:
    return next((t["content"] for t in reversed(row.get("messages", [])) if t["role"] == "user"), "")


def probe_generation(max_new_tokens: int = DEFAULT_BUDGET):
    """Return the probe's decoding settings: greedy, no repetition penalty, `max_new_tokens` new tokens."""
    from stylealign.generate import GenerationConfig

    return GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, repetition_penalty=1.0)


def score_answers(answers: list[str], rows: list[dict], stopped: list[bool] | None = None) -> list[dict]:
    """Return the probe features of one model's greedy answers to `rows` (top openers marked per language)."""
    from stylealign.evaluate.markers import lexicon_rates

    langs = [r.get("language") or detect_language(_last_user(r)) for r in rows]
    feats = []
    for i, (answer, lang) in enumerate(zip(answers, langs)):
        rates = lexicon_rates(answer, detect_language(answer) if answer.strip() else lang)
        feats.append(answer_features(answer, lang, None if stopped is None else stopped[i],
                                     rates["hedge_rate"] + rates["boilerplate_rate"]))
    mark_top_openers(answers, langs, feats)
    return feats


def summarize(answers: list[str], rows: list[dict], stopped: list[bool] | None = None, min_group: int = 5) -> dict:
    """Return one model's probe summary: mean of each feature, the top opener's share (the largest over
    languages with >= `min_group` answers), and the verdict balance."""
    feats = score_answers(answers, rows, stopped)
    out = {k.removeprefix("probe_"): _mean([f[k] for f in feats]) for k in PROBE_METRICS}
    langs = [r.get("language") or detect_language(_last_user(r)) for r in rows]
    openers = mark_top_openers(answers, langs, [dict(f) for f in feats])
    shares = [o["share"] for o in openers.values() if o["n"] >= min(min_group, len(rows))]
    out["top_opener"] = max(shares) if shares else None
    out["openers"] = openers
    out["verdicts"] = verdict_balance(answers, rows)
    out["yes_share"] = out.pop("yes")
    out["empty"] = sum(not a.strip() for a in answers) / len(answers) if answers else None
    # verdict-first where a verdict can open the answer: known-answer and other yes/no questions (the evaluation's target)
    out["verdict_first_yes_no"] = _mean([f["probe_verdict_first"] for f, r in zip(feats, rows)
                                         if r.get("expected") in ("yes", "no") or is_yes_no_question(_last_user(r))])
    return out


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if not math.isnan(v)]
    return sum(finite) / len(finite) if finite else None


# ---------------------------------------------------------------- in an evaluation


def section(answers: dict[str, list[str]], stopped: dict[str, list], rows: list[dict], budget: int) -> dict:
    """Return the report's probe section: settings, then per model the summary (means, openers per
    language, verdict balance) and why its repetitive answers were counted."""
    models = {}
    for label, texts in answers.items():
        block = summarize(texts, rows, stopped.get(label))
        langs = [r.get("language") or detect_language(_last_user(r)) for r in rows]
        reasons = Counter(repetition_reason(t, detect_language(t) if t.strip() else lg, cut_off=s is False)
                          for t, lg, s in zip(texts, langs, stopped.get(label) or [None] * len(texts)))
        block["repetition_reasons"] = {k: v for k, v in reasons.items() if k}
        if label != "baseline" and "baseline" in answers:  # do its verdicts keep what the base model says it believes?
            block["belief_consistency"] = belief_consistency(answers["baseline"], texts)
        models[label] = block
    return {"status": "ok", "generation": probe_generation(budget).to_dict(), "n": len(rows), "models": models}


def flags(label: str, comparison: dict, probe: dict) -> list[dict]:
    """Return the probe's red flags for one variant: worse than the baseline beyond the CI on repetition,
    opener collapse (overall or in any language) or language, or verdicts outside 30–70% yes and more
    one-sided than the baseline's (a baseline with under 6 verdicts sets no reference)."""
    def worse(metric: str, block: dict) -> bool:
        lo = ((block.get(metric) or {}).get("ci") or [None])[0]
        return lo is not None and lo > 0

    overall, by_lang = comparison["overall"], comparison.get("by_language") or {}
    out = []
    mine, base = (probe.get("models") or {}).get(label) or {}, (probe.get("models") or {}).get("baseline") or {}
    if worse("probe_repetitive", overall):
        out.append(_flag(label, "greedy_repetition", f"greedy answers repeat themselves more than the baseline's "
                         f"({_pct(base.get('repetitive'))} → {_pct(mine.get('repetitive'))})"))
    collapsed = [lg for lg, block in by_lang.items() if worse("probe_top_opener", block)]
    if worse("probe_top_opener", overall) or collapsed:
        lang = collapsed[0] if collapsed else max(mine.get("openers") or {"en": {}},
                                                  key=lambda lg: (mine.get("openers") or {}).get(lg, {}).get("share") or 0)
        top = (mine.get("openers") or {}).get(lang) or {}
        out.append(_flag(label, "opener_collapse", f"greedy answers collapse onto one opener: "
                         f"{top.get('opener')!r} starts {_pct(top.get('share'))} of {lang} answers"))
    if worse("probe_lang_mismatch", overall):
        out.append(_flag(label, "greedy_language_drift", "greedy answers are in the wrong language more often than the baseline's"))
    for name, block in (mine.get("verdicts") or {}).items():
        ref = ((base.get("verdicts") or {}).get(name) or {})
        yes, base_yes = block.get("yes_share"), ref.get("yes_share") if ref.get("verdicts", 0) >= 6 else None
        if yes is not None and block["verdicts"] >= 6 and not 0.3 <= yes <= 0.7 and \
                (base_yes is None or abs(yes - 0.5) > abs(base_yes - 0.5)):
            out.append(_flag(label, "one_sided_verdicts", f"greedy verdicts on {name.replace('_', ' ')} prompts are "
                             f"{_pct(yes)} yes ({block['verdicts']} verdicts; baseline {_pct(ref.get('yes_share'))} "
                             f"of {ref.get('verdicts', 0)})"))
    return out


def _flag(variant, code: str, message: str) -> dict:
    return {"variant": variant, "code": code, "severity": "error", "message": message, "source": "probe"}


def _pct(x) -> str:
    return "–" if x is None else f"{x:.0%}"
