"""L1 style classifier: does an answer read like the persona (chosen) or like the hedgy default (rejected)?

Features are MiniLM sentence embeddings plus the L0 markers; the model is a logistic regression.
It is trained on the persona's preference pairs whose rejected side differs in style, not in facts or
manners ("hedge": a hand-written default-assistant answer; "student": the base model's own answer, as
`stylealign synth` writes them),
its AUROC is estimated out-of-fold with pairs kept together (a pair's chosen and rejected never
straddle train and test), and the final model is refit on every pair to score eval answers.
"""

from __future__ import annotations

import glob
import math
from dataclasses import dataclass, field

import numpy as np

from stylealign.errors import ConfigError
from stylealign.evaluate.content import embed
from stylealign.evaluate.markers import style_markers
from stylealign.text import detect_language

STYLE_KINDS = ("hedge", "student")
FEATURE_MARKERS = ("length", "hedge_rate", "boilerplate_rate", "booster_rate", "verdict_first", "list_items",
                   "markdown", "asks_back", "sent_len_mean", "distinct2")


@dataclass
class StyleClassifier:
    """A fitted persona-vs-default classifier with its held-out quality."""

    model: object
    embedder: object
    auroc: float | None
    auroc_by_language: dict[str, float | None] = field(default_factory=dict)
    n_pairs: dict[str, int] = field(default_factory=dict)
    kind: str = "hedge"  # the rejected kinds it was trained on, "+"-joined

    def predict(self, texts: list[str], languages: list[str | None] | None = None) -> np.ndarray:
        """Return P(persona) for each text (nan for empty texts)."""
        if not texts:
            return np.zeros(0)
        p = self.model.predict_proba(features(texts, languages, self.embedder))[:, 1]
        return np.where([bool(t.strip()) for t in texts], p, np.nan)

    def summary(self) -> dict:
        """Return the JSON-ready description used in report.json["classifier"]."""
        return {"status": "ok", "kind": self.kind, "auroc": self.auroc, "auroc_by_language": self.auroc_by_language,
                "n_pairs": self.n_pairs, "features": ["minilm-l6-v2 embedding", *FEATURE_MARKERS, "is_zh"],
                "method": "logistic regression, 5-fold out-of-fold AUROC grouped by pair"}


def marker_matrix(texts: list[str], languages: list[str | None]) -> np.ndarray:
    """Return the L0 feature block [n, len(FEATURE_MARKERS) + 1]; nan -> 0, log1p(length), is_zh last."""
    rows = []
    for text, lang in zip(texts, languages):
        lang = lang or detect_language(text)
        m = style_markers(text, detect_language(text) if text.strip() else lang)
        vals = [0.0 if math.isnan(m[k]) else m[k] for k in FEATURE_MARKERS]
        vals[0] = math.log1p(vals[0])  # length is heavy-tailed; log keeps it from dominating
        rows.append(vals + [float(lang == "zh")])
    return np.asarray(rows, dtype=float)


def features(texts: list[str], languages: list[str | None] | None, embedder) -> np.ndarray:
    """Return the classifier input: [embedding | L0 markers] per text."""
    languages = list(languages) if languages is not None else [None] * len(texts)
    return np.hstack([embed(embedder, list(texts)), marker_matrix(texts, languages)])


def _last_assistant(turns) -> str:
    """Return the content of the last assistant turn in a list of turns ('' if none)."""
    for t in reversed(turns or []):
        if isinstance(t, dict) and t.get("role") == "assistant":
            return str(t.get("content") or "")
    return ""


def pair_texts(rows: list[dict], kind: str | tuple[str, ...] = STYLE_KINDS) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """Return (texts, labels 1=chosen/0=rejected, languages, pair groups) from preference rows of `kind`
    (one rejected kind or several; rows without a rejected_kind count as the first)."""
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    texts, labels, langs, groups = [], [], [], []
    for g, row in enumerate(r for r in rows if r.get("rejected_kind", kinds[0]) in kinds):
        for label, side in ((1, "chosen"), (0, "rejected")):
            texts.append(_last_assistant(row.get(side)))
            labels.append(label)
            langs.append(row.get("language") or detect_language(texts[-1]))
            groups.append(g)
    return texts, np.asarray(labels), langs, np.asarray(groups)


def _pipeline(seed: int):
    """Return an unfitted scaler + logistic-regression pipeline."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=5000, random_state=seed))


def _auroc(y: np.ndarray, p: np.ndarray) -> float | None:
    """Return roc_auc_score(y, p), or None when only one class is present."""
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(set(y.tolist())) == 2 else None


def train_style_classifier(rows: list[dict], embedder, kind: str | tuple[str, ...] = STYLE_KINDS, folds: int = 5,
                           seed: int = 0, min_pairs: int = 8) -> StyleClassifier:
    """Return a StyleClassifier fitted on `rows` (preference rows); raises ValueError if too few pairs."""
    from sklearn.model_selection import GroupKFold

    texts, y, langs, groups = pair_texts(rows, kind)
    n_pairs = len(set(groups.tolist()))
    if n_pairs < min_pairs:
        raise ConfigError(f"only {n_pairs} preference pairs of kind {kind!r}; need {min_pairs}")
    present = [k for k in ((kind,) if isinstance(kind, str) else kind) if any(r.get("rejected_kind") == k for r in rows)]
    X = features(texts, langs, embedder)
    oof = np.zeros(len(y))
    for train, test in GroupKFold(n_splits=min(folds, n_pairs)).split(X, y, groups):
        oof[test] = _pipeline(seed).fit(X[train], y[train]).predict_proba(X[test])[:, 1]
    lang_arr = np.asarray(langs)
    by_lang = {lg: _auroc(y[lang_arr == lg], oof[lang_arr == lg]) for lg in sorted(set(langs))}
    counts = {lg: int((lang_arr == lg).sum() // 2) for lg in sorted(set(langs))}
    model = _pipeline(seed).fit(X, y)
    return StyleClassifier(model, embedder, _auroc(y, oof), by_lang, counts, "+".join(present) or str(kind))


def load_preference_rows(persona: str = "sharp-candid", paths: list[str] | None = None) -> list[dict]:
    """Return the persona's validated preference rows; `paths` (files or globs) overrides its declared files.
    A bad row is a DataError naming it: a classifier trained on rows that failed validation measures nothing."""
    from stylealign.data import load_preference
    from stylealign.personas import load_persona

    if paths is None:
        paths = [str(p) for p in load_persona(persona).preference_files()]
    return load_preference([f for p in paths for f in (sorted(glob.glob(p)) or [p])])
