"""Per-answer features: the model-free ones (L0 markers, language match, robustness, truth), then relevance,
drift and P(persona) where an embedder and the style classifier (trained here on the persona's preference
pairs) are at hand, and the greedy probe's features.
"""

from __future__ import annotations

import math

from stylealign.evaluate.config import EvalConfig
from stylealign.evaluate.markers import style_markers
from stylealign.evaluate.robustness import robustness_features
from stylealign.evaluate.state import BASELINE, EvalState, prompt_text
from stylealign.evaluate.truth import truth_features
from stylealign.text import detect_language


def score_probe(state: EvalState, lexicons: dict) -> None:
    """Add each model's probe features (probe_*) to its per-answer features, so they get paired CIs; the
    persona's lexicon metrics are scored on the greedy answers too (probe_<name>)."""
    from stylealign.evaluate import probe, targets
    from stylealign.text import detect_language

    for name in lexicons:
        state.metrics[f"probe_{name}"] = {**state.metrics[name], "layer": "L1-coherence",
                                          "description": state.metrics[name]["description"] + " (greedy)"}
    for label, texts in state.probe_answers.items():
        for row, text, f, pf in zip(state.rows, texts, state.features[label],
                                    probe.score_answers(texts, state.rows, state.probe_stopped[label])):
            lang = detect_language(text) if text.strip() else row.get("language", "en")
            f.update(pf)
            f.update({f"probe_{k}": v for k, v in targets.lexicon_features(text, lang, lexicons).items()})


def answer_features(row: dict, answer: str) -> dict[str, float]:
    """Return the model-free features of one answer: L0 markers, language match, robustness, truth."""
    row_lang = row.get("language") or detect_language(prompt_text(row))
    lang = detect_language(answer) if answer.strip() else row_lang
    out = style_markers(answer, lang)
    out["lang_mismatch"] = float(lang != row_lang) if answer.strip() else math.nan
    out.update(robustness_features(answer, row.get("kind")))
    out.update(truth_features(answer, row.get("expected")))
    return out


def score_answers(state: EvalState, embedder, classifier) -> None:
    """Fill state.features for every model label: L0, then relevance, drift and P(persona) when available."""
    prompts = [prompt_text(r) for r in state.rows]
    langs = [r.get("language") for r in state.rows]
    for label, answers in state.answers.items():
        feats = [answer_features(r, a) for r, a in zip(state.rows, answers)]
        extra = {"relevance": _cos(embedder, answers, prompts),
                 "drift": _cos(embedder, answers, state.answers[BASELINE]) if label != BASELINE else None,
                 "p_persona": classifier.predict(answers, langs) if classifier is not None else None}
        for name, values in extra.items():
            for f, v in zip(feats, values if values is not None else [math.nan] * len(feats)):
                f[name] = float(v)
        state.features[label] = feats


def _cos(embedder, left: list[str], right: list[str]):
    """Return row-wise cosines, or None without an embedder."""
    if embedder is None:
        return None
    from stylealign.evaluate.content import cosines

    return cosines(embedder, left, right)


def train_classifier(config: EvalConfig, embedder):
    """Return (classifier or None, report section); a missing/small preference set skips with a reason."""
    if not config.classifier or embedder is None:
        return None, {"status": "skipped", "reason": "classifier disabled or no embedder"}
    from stylealign.evaluate.classifier import load_preference_rows, train_style_classifier

    try:
        rows = load_preference_rows(config.persona, config.pref_paths)
        clf = train_style_classifier(rows, embedder, seed=config.seed)
    except (ValueError, OSError) as e:
        return None, {"status": "skipped", "reason": str(e)}
    return clf, clf.summary()
