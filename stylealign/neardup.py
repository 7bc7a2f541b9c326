"""Near-duplicate prompts: every user turn of a persona's SFT, preference, eval and probe rows,
vectorised with TF-IDF over character n-grams (char_wb, 3-5) and compared by cosine similarity.

First user turns are compared with each other, except two eval rows from different suite files (the
smoke suite is a sample of the others by design) and a synth pair with the row it was built from.
Later user turns are compared only eval against the rest: the held-out check (a follow-up such as
"Are you sure?" may repeat across training rows). The default failure threshold, 0.75, was chosen by
reading the closest pairs of the shipped data: distinct prompts on the same topic ("How do
noise-cancelling headphones work?" next to "Are $400 noise-cancelling headphones worth it ...?")
score at most about 0.6; the same code snippet under two different lead-ins ("Is there a bug here?"
/ "帮我看下这个函数有没有问题") scores about 0.85; a copy with one or two words changed scores 0.8-0.9
(median; short prompts less). A persona can change it with `requirements.near_duplicate_max`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from stylealign.persona_data import SET_LABELS, Loaded

NEAR_DUPLICATE_MAX = 0.75
TOP_PAIRS = 10
FIRST_TURN = "messages[0].content"


@dataclass(frozen=True)
class PromptRef:
    """A user turn (the first one, or a later one named by `field`) and where it came from."""

    set: str
    where: str
    id: str | None
    text: str
    field: str = FIRST_TURN  # where a later user turn came from, e.g. "messages[2].content"


@dataclass(frozen=True)
class SimilarPair:
    """Two prompts and their cosine similarity (0..1)."""

    score: float
    a: PromptRef
    b: PromptRef

    def __str__(self) -> str:
        return f"{self.score:.3f}  {describe(self.a)}  ~  {describe(self.b)}"


def describe(p: PromptRef) -> str:
    return f"{p.set}:{p.id or '?'} ({p.where})"


def prompts(sets: dict[str, Loaded]) -> list[PromptRef]:
    """Return every user turn of every SFT, preference, eval and probe row (baseline rows repeat SFT
    prompts by design, so they are left out); later turns carry the field they come from."""
    refs = []
    for kind in ("sft", "preference", "eval", "probe"):
        for r in sets.get(kind, Loaded(kind)).records:
            key = "messages" if "messages" in r.row else "prompt"
            users = [(i, t["content"]) for i, t in enumerate(r.row.get(key) or []) if t.get("role") == "user"]
            for n, (i, text) in enumerate(users):
                field_ = FIRST_TURN if n == 0 else f"{key}[{i}].content"
                refs.append(PromptRef(SET_LABELS[kind], f"{r.file}:{r.line}", r.row.get("id"), text, field_))
    return refs


def compared(a: PromptRef, b: PromptRef) -> bool:
    """Return False for two eval rows from different suite files (suites may share prompts on purpose),
    and for a synth pair and the SFT row (or another pair) it was built from."""
    if a.field != FIRST_TURN or b.field != FIRST_TURN:  # later turns: only the held-out check, eval vs the rest
        return (a.set == "eval") != (b.set == "eval")
    same_file = a.where.rsplit(":", 1)[0] == b.where.rsplit(":", 1)[0]
    return not (a.set == b.set == "eval" and not same_file) and not same_source(a, b)


def source_id(row_id: str | None) -> str | None:
    """Return the SFT row a `stylealign synth` pair answers ("pair-<id>-t<k>" -> <id>), else the id itself."""
    m = re.fullmatch(r"pair-(.+)-t\d+", row_id or "")
    return m.group(1) if m else row_id


def same_source(a: PromptRef, b: PromptRef) -> bool:
    """Return True when one of two prompts is a synth pair built from the other's row (or both from one
    row): on-policy pairs repeat their SFT prompts by design, as baseline rows do."""
    pair = str(a.id).startswith("pair-") or str(b.id).startswith("pair-")
    return pair and a.id is not None and source_id(a.id) == source_id(b.id)


def similar_prompts(prompts: Sequence[PromptRef], min_score: float = 0.5, top: int = 0,
                    compare: Callable[[PromptRef, PromptRef], bool] | None = None) -> list[SimilarPair]:
    """Return, most similar first, every pair of prompts with cosine similarity >= min_score, and at
    least the `top` most similar pairs whatever their score; `compare(a, b)` False skips a pair.
    (TF-IDF over char_wb 3-5-grams, sparse: ~2000 prompts take about a second.)"""
    if len(prompts) < 2:
        return []
    import numpy as np
    from scipy.sparse import triu
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [" ".join(p.text.lower().split()) for p in prompts]
    matrix = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5)).fit_transform(texts)
    sims = triu(matrix @ matrix.T, k=1).tocoo()  # rows are L2-normalised: the product is cosine
    order = np.lexsort((sims.col, sims.row, -sims.data))  # by score, ties by position: deterministic
    found: list[SimilarPair] = []
    for k in order:  # walk down the scores only as far as needed
        score, a, b = float(sims.data[k]), prompts[sims.row[k]], prompts[sims.col[k]]
        if score < min_score - 1e-9 and len(found) >= top:
            break
        if compare is None or compare(a, b):
            found.append(SimilarPair(round(score, 4), a, b))
    return found
