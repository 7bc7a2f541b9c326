"""Atomic file writes: a temp file in the same folder, fsync, then os.replace, so a reader (or a
crash) never sees half a file and an existing file stays intact until its replacement is complete."""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterable


@contextmanager
def naming(path: str | Path):
    """Give an OS error raised while writing `path` that path: a write or fsync that fails on a full disk
    reports "[Errno 28] No space left on device" without saying where."""
    try:
        yield
    except OSError as e:
        if e.filename is None and e.errno is not None:
            raise OSError(e.errno, e.strerror or os.strerror(e.errno), str(path)) from e
        raise


def _atomic(path: str | Path, write: Callable[[IO[bytes]], object]):
    """Call `write(f)` on a temp file next to `path`, fsync it and rename it onto `path`; return write's result."""
    path = Path(path)
    with naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                result = write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return result


def file_record(path: str | Path, rows: int | None = None) -> dict:
    """Return {path, sha256, rows} of a data file, as a run's manifest records it."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return {"path": str(path), "sha256": digest, **({"rows": rows} if rows is not None else {})}


def read_jsonl(path: str | Path, missing_ok: bool = False) -> list[dict]:
    """Return the JSON objects of a JSONL file (blank lines skipped; [] for a missing file with `missing_ok`)."""
    path = Path(path)
    if missing_ok and not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def check_writable(folder: str | Path) -> None:
    """Create `folder` and a temp file in it (removed at once), so a read-only or full disk fails before
    minutes of work rather than at their first write; the OSError names the folder."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:  # named after the folder, not the temp file nobody asked for
        raise OSError(e.errno, e.strerror or str(e), str(folder)) from e


def append_durable(path: str | Path, data: str | bytes) -> None:
    """Append `data` to `path` with one write, then fsync: a crash-safe log's record lands whole or, torn by a
    crash, as an unfinished last line its reader drops."""
    path = Path(path)
    with naming(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())


def write_atomic(path: str | Path, data: str | bytes) -> Path:
    """Write `data` (text as UTF-8, or bytes) to `path` atomically; return the path."""
    _atomic(path, lambda f: f.write(data.encode("utf-8") if isinstance(data, str) else data))
    return Path(path)


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


def _dumps(obj, indent: int | None = None) -> str:
    return json.dumps(json_safe(obj), ensure_ascii=False, indent=indent, default=str)


def write_json(path: str | Path, obj) -> Path:
    """Write `obj` as pretty UTF-8 JSON atomically (nan -> null, unknown types as str); return the path."""
    return write_atomic(path, _dumps(obj, indent=2) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    """Write `rows` (any iterable, streamed) as UTF-8 JSONL atomically; return how many were written.
    An iterable that raises half-way leaves `path` as it was."""
    def write(f) -> int:
        n = 0
        for row in rows:
            f.write((_dumps(row) + "\n").encode("utf-8"))
            n += 1
        return n

    return _atomic(path, write)
