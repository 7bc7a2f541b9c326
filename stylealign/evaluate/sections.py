"""The report's sections computed from the scored state: comparisons with paired CIs, truth under style,
retention (perplexity, KL), the probe, pushback, the judge's win rates and the changed-most examples.
Each returns a skip with its reason when its inputs are missing or it was turned off.
"""

from __future__ import annotations

import math

from stylealign.evaluate.config import EvalConfig
from stylealign.evaluate.io import load_corpus
from stylealign.evaluate.state import BASELINE, EvalState, conversation, known_rows, prompt_text
from stylealign.evaluate.stats import grouped_paired
from stylealign.evaluate.truth import truth_summary

GROUPS = ("language", "category", "kind", "adversarial")


def pushback_section(state: EvalState, config: EvalConfig) -> dict:
    if not state.pushback_answers:
        return {"status": "skipped", "reason": "no known-answer prompts, or --no-pushback / --no-probe"}
    from stylealign.evaluate import pushback

    idx = known_rows(state)
    first = {label: [state.probe_answers[label][i] for i in idx] for label in state.pushback_answers}
    return pushback.section([state.rows[i] for i in idx], first, state.pushback_answers, config.n_boot)


def comparisons(state: EvalState, config: EvalConfig) -> dict:
    """Return {variant label: grouped paired stats (overall, by_language, by_category, by_kind, by_adversarial)}."""
    out = {}
    for v in state.variants:
        paired = [{**{g: r.get(g) for g in GROUPS}, "b": state.features[BASELINE][i], "a": state.features[v.label][i]}
                  for i, r in enumerate(state.rows)]
        out[v.label] = grouped_paired(paired, list(state.metrics), "b", "a", GROUPS, config.n_boot, config.seed)
    return out


def truth_section(state: EvalState) -> dict:
    """Return truth-under-style summaries for the baseline and each variant (overall and per language)."""
    idx = [i for i, r in enumerate(state.rows) if r.get("expected") in ("yes", "no")]
    if not idx:
        return {"status": "skipped", "reason": "no rows with an expected yes/no answer in the suites"}
    out: dict = {"status": "ok", "models": {}}
    for label, answers in state.answers.items():
        block = truth_summary([answers[i] for i in idx], [state.rows[i]["expected"] for i in idx])
        block["by_language"] = {}
        for lang in sorted({state.rows[i].get("language") for i in idx}):
            sub = [i for i in idx if state.rows[i].get("language") == lang]
            block["by_language"][lang] = truth_summary([answers[i] for i in sub], [state.rows[i]["expected"] for i in sub])
        out["models"][label] = block
    return out


def retention(generator, state: EvalState, config: EvalConfig) -> dict:
    """Return the retention section (perplexity on the neutral corpus, KL on suite prompts) or a skip."""
    if not config.retention or not hasattr(generator, "logits"):
        return {"status": "skipped", "reason": "disabled or the generator has no logits()"}
    from stylealign.evaluate.retention import retention_section

    corpus = load_corpus(config.corpus)
    corpus = [corpus[i] for i in _spread(corpus, config.corpus_max_texts)]  # a capped sample keeps both languages
    idx = _spread(state.rows, config.kl_max_prompts)
    convs = [conversation(state.rows[i], config.system_prompt) for i in idx]
    section = retention_section(generator, corpus, [(v.adapter, v.strength) for v in state.variants], convs,
                                [state.answers[BASELINE][i] for i in idx], [state.rows[i].get("language", "en") for i in idx],
                                {(v.adapter, v.strength): v.label for v in state.variants})
    return {"status": "ok", "corpus": config.corpus, **section}


def _spread(rows: list[dict], cap: int | None) -> list[int]:
    """Return up to `cap` row indexes, alternating languages so a capped sample still covers both."""
    by_lang: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_lang.setdefault(r.get("language", "en"), []).append(i)
    order = [i for group in _interleave(list(by_lang.values())) for i in group]
    return sorted(order[:cap] if cap else order)


def _interleave(lists: list[list[int]]):
    """Yield one-element lists taking turns across `lists`."""
    for k in range(max((len(x) for x in lists), default=0)):
        for x in lists:
            if k < len(x):
                yield [x[k]]


def probe_section(state: EvalState, config: EvalConfig) -> dict:
    """Return the report's probe section, or a skip when the probe was off."""
    if not state.probe_answers:
        return {"status": "skipped", "reason": "probe disabled (--no-probe)"}
    from stylealign.evaluate import probe

    return probe.section(state.probe_answers, state.probe_stopped, state.rows, config.probe_max_new_tokens)


def judge_section(judge, state: EvalState, config: EvalConfig, spec: str | None) -> dict:
    """Return per-variant win rates of the adapter over the baseline, judged in both orders."""
    if judge is None:
        return {"status": "skipped", "reason": "no --judge given"}
    from stylealign.evaluate.judge import judge_pair, win_rate_summary

    idx = _spread(state.rows, config.judge_max_pairs)
    out: dict = {"status": "ok", "spec": spec, "variants": {}}
    for v in state.variants:
        recs = [{**judge_pair(judge, _render(state.rows[i]), state.answers[v.label][i], state.answers[BASELINE][i]),
                 "language": state.rows[i].get("language")} for i in idx]
        block = win_rate_summary(recs, config.n_boot, config.seed)
        block["by_language"] = {lg: win_rate_summary([r for r in recs if r["language"] == lg], config.n_boot, config.seed)
                                for lg in sorted({r["language"] for r in recs})}
        out["variants"][v.label] = block
    return out


def _render(row: dict) -> str:
    """Return a conversation as plain text for the judge ("User: ..." / "Assistant: ...")."""
    return "\n\n".join(f"{t['role'].capitalize()}: {t['content']}" for t in row["messages"])


def examples(state: EvalState, n: int) -> dict:
    """Return, per variant, the prompts whose answer changed most (|ΔP(persona)|, else 1 - drift), both languages."""
    out = {}
    for v in state.variants:
        fa, fb = state.features[v.label], state.features[BASELINE]
        change = [abs(a["p_persona"] - b["p_persona"]) if not math.isnan(a["p_persona"] - b["p_persona"])
                  else (1 - a["drift"] if not math.isnan(a["drift"]) else 0.0) for a, b in zip(fa, fb)]
        picked = _top_per_language(state.rows, change, n)
        out[v.label] = [{"key": state.rows[i]["key"], "language": state.rows[i].get("language"),
                         "category": state.rows[i].get("category"), "change": change[i], "prompt": prompt_text(state.rows[i]),
                         "baseline": state.answers[BASELINE][i], "adapter": state.answers[v.label][i],
                         "p_persona": [fb[i]["p_persona"], fa[i]["p_persona"]]} for i in picked]
    return out


def _top_per_language(rows: list[dict], score: list[float], n: int) -> list[int]:
    """Return up to `n` indexes with the highest score, shared fairly across languages."""
    langs = sorted({r.get("language", "en") for r in rows})
    each = max(1, math.ceil(n / max(len(langs), 1)))
    picked = []
    for lg in langs:
        idx = sorted((i for i, r in enumerate(rows) if r.get("language", "en") == lg), key=lambda i: -score[i])
        picked += idx[:each]
    return sorted(picked, key=lambda i: -score[i])[:n]
