"""Input/output helpers: JSONL reading, suite/corpus loading, and atomic file writes."""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from pathlib import Path

DEFAULT_SUITES = ("eval/suites/style_en.jsonl", "eval/suites/style_zh.jsonl", "eval/suites/known_answers.jsonl")
DEFAULT_CORPUS = "eval/corpus/neutral.jsonl"


def read_jsonl(path: str | Path) -> list[dict]:
    """Return the JSON objects of a JSONL file (blank lines skipped)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def load_suite(path: str | Path, limit: int | None = None) -> list[dict]:
    """Return the rows of one eval suite (first `limit` rows), each with "suite" and a unique "key" added.

    Uses stylealign.data.load_eval (full validation) when available, else plain JSONL.
    """
    try:
        from stylealign.data import DataError, load_eval
    except ImportError:
        rows = read_jsonl(path)
    else:
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


def json_safe(obj):
    """Return `obj` with nan/inf floats replaced by None and numpy scalars by Python ones (for JSON)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write `data` to `path` via a temp file in the same folder + rename (readers never see a half file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | Path, obj) -> Path:
    """Write `obj` as pretty UTF-8 JSON atomically (nan -> null)."""
    return write_atomic(path, json.dumps(json_safe(obj), ensure_ascii=False, indent=2) + "\n")


def write_jsonl(path: str | Path, rows: list[dict]) -> Path:
    """Write `rows` as UTF-8 JSONL atomically (nan -> null)."""
    return write_atomic(path, "".join(json.dumps(json_safe(r), ensure_ascii=False) + "\n" for r in rows))
