"""Evaluation inputs: JSONL reading, suite and corpus loading (writes go through stylealign.files)."""

from __future__ import annotations

import warnings
from pathlib import Path

from stylealign.files import read_jsonl

DEFAULT_SUITES = ("eval/suites/style_en.jsonl", "eval/suites/style_zh.jsonl", "eval/suites/known_answers.jsonl")
DEFAULT_CORPUS = "eval/corpus/neutral.jsonl"


def load_suite(path: str | Path, limit: int | None = None) -> list[dict]:
    """Return the rows of one eval suite (first `limit` rows), each with "suite" and a unique "key" added.

    Validated by stylealign.data.load_eval; metadata outside the shared schema only warns.
    """
    from stylealign.data import DataError, load_eval

    try:
        rows = load_eval([str(path)])
    except DataError as e:  # metadata outside the shared schema (e.g. a new "kind"): warn, keep going
        rows = load_eval([str(path)], schema=False)  # structural problems still raise
        shown = "\n  ".join(str(p) for p in e.problems[:3])
        warnings.warn(f"{path}: {len(e.problems)} schema problem(s), scoring anyway:\n  {shown}", stacklevel=2)
    name = Path(path).stem
    rows = rows[:limit] if limit else rows
    return [{**r, "suite": name, "key": f"{name}/{r.get('id', i)}"} for i, r in enumerate(rows)]


def load_suites(paths, limit: int | None = None) -> list[dict]:
    """Return the rows of every suite in `paths` (paths, or already-loaded row lists), in order."""
    rows: list[dict] = []
    for p in paths:
        if isinstance(p, (list, tuple)):
            rows += [{"suite": "inline", "key": f"inline/{r.get('id', i)}", **r} for i, r in enumerate(p[:limit] if limit else p)]
        else:
            rows += load_suite(p, limit)
    return rows


def load_corpus(path: str | Path | None, limit: int | None = None) -> list[dict]:
    """Return neutral-corpus rows ({"id","language","text"}), or [] when `path` is None or missing."""
    if not path or not Path(path).exists():
        return []
    rows = read_jsonl(path)
    return rows[:limit] if limit else rows
