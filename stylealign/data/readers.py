"""Reading data files into Records: JSONL, JSON (a list of rows), CSV, Parquet and saved-datasets folders.

A reader never raises on bad content: every unreadable line, cell or file becomes a Problem naming
its `file:line`, so one run reports all of them. Pickles are never loaded. pyarrow and datasets are
imported only by the readers that need them, so reading JSONL (and `stylealign --help`) stays fast.
"""

from __future__ import annotations

import csv
import errno
import glob
import io
import json
import os
from pathlib import Path
from typing import Any

from stylealign.data.schema import METADATA_KEYS, PathsLike, Problem, Record, is_turn_list, json_kind
from stylealign.errors import one_line

_PICKLE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".joblib", ".npy", ".npz"}


def expand_paths(paths: PathsLike) -> list[Path]:
    """Return `paths` as a list of Paths; a pattern with * ? [ is expanded (sorted)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: list[Path] = []
    for item in paths:
        text = str(item)
        if any(ch in text for ch in "*?[") and not Path(text).exists():
            found += sorted(Path(p) for p in glob.glob(text))
        else:
            found.append(Path(text))
    return found


def read_records(paths: PathsLike) -> tuple[list[Record], list[Problem]]:
    """Return (records, problems) for every file in `paths`; unreadable rows become problems."""
    records: list[Record] = []
    problems: list[Problem] = []
    files = expand_paths(paths)
    if not files:
        problems.append(Problem("<paths>", 0, "paths", "no data files given (or the pattern matched nothing)"))
    for path in files:
        got, bad = read_file(path)
        if not got and not bad:
            bad = [Problem(show_path(path), 0, "file", "no rows")]
        records += got
        problems += bad
    return records, problems


def read_file(path: str | os.PathLike) -> tuple[list[Record], list[Problem]]:
    """Return (records, problems) read from one file or saved-datasets folder, chosen by its suffix."""
    path = Path(path)
    name = show_path(path)
    if path.is_dir():
        return _read_saved_dataset(path, name)
    if not path.exists():
        # exists() is False for a dangling link and for a loop of links too: name which one it is
        why = "does not exist"
        if path.is_symlink():
            try:
                path.resolve(strict=True)
            except RuntimeError:  # pathlib's "Symlink loop" (an OSError ELOOP on newer Pythons)
                why = "is a loop of symbolic links; point it at a real file"
            except OSError as e:
                why = ("is a loop of symbolic links; point it at a real file" if e.errno == errno.ELOOP
                       else f"is a symbolic link to {os.readlink(path)}, which does not exist")
        return [], [Problem(name, 0, "file", why)]
    suffix = path.suffix.lower()
    if suffix in _PICKLE_SUFFIXES:
        return [], [Problem(name, 0, "file", f"{suffix} files are not loaded (pickles can run code); use JSONL")]
    readers = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv, ".parquet": _read_parquet}
    reader = readers.get(suffix)
    if reader is None:
        return [], [Problem(name, 0, "file", f"unsupported format {suffix or '(none)'!r} "
                                             "(use .jsonl, .json, .csv, .parquet or a save_to_disk folder)")]
    return reader(path, name)


def show_path(path: str | os.PathLike) -> str:
    """Return `path` relative to the cwd when below it (short messages), else unchanged."""
    try:
        return str(Path(os.path.abspath(path)).relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _read_jsonl(path: Path, name: str) -> tuple[list[Record], list[Problem]]:
    records, problems = [], []
    for number, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            problems.append(Problem(name, number, "encoding", _utf8_message(raw, e)))
            continue
        text = text.lstrip("\ufeff") if number == 1 else text
        if not text.strip():  # blank lines (a trailing newline) carry no row
            continue
        try:
            records.append(Record(name, number, json.loads(text)))
        except json.JSONDecodeError as e:
            problems.append(Problem(name, number, "json", f"invalid JSON: {e.msg} (column {e.colno})"))
    return records, problems


def _decode(path: Path, name: str) -> tuple[str | None, list[Problem]]:
    """Return (text, []) for a UTF-8 file, or (None, [problem naming the line of the bad byte])."""
    data = path.read_bytes()
    data = data[3:] if data.startswith(b"\xef\xbb\xbf") else data  # a BOM some editors add
    try:
        return data.decode("utf-8"), []
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        start = data.rfind(b"\n", 0, e.start) + 1
        return None, [Problem(name, line, "encoding", _utf8_message(data[start:], e, offset=start))]


def _utf8_message(raw: bytes, error: UnicodeDecodeError, offset: int = 0) -> str:
    column = error.start - offset + 1
    return f"not valid UTF-8 (byte 0x{raw[error.start - offset]:02x} at byte {column} of the line)"


def _read_json(path: Path, name: str) -> tuple[list[Record], list[Problem]]:
    text, problems = _decode(path, name)
    if text is None:
        return [], problems
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        return [], [Problem(name, e.lineno, "json", f"invalid JSON: {e.msg} (column {e.colno})")]
    if not isinstance(data, list):
        return [], [Problem(name, 1, "json", f"expected a JSON list of rows, got {json_kind(data)}")]
    return [Record(name, i, row) for i, row in enumerate(data, 1)], []


def _read_csv(path: Path, name: str) -> tuple[list[Record], list[Problem]]:
    text, problems = _decode(path, name)
    if text is None:
        return [], problems
    reader = csv.DictReader(io.StringIO(text, newline=""))
    records, start = [], 2  # line 1 is the header
    try:
        for row in reader:
            decoded, bad = _csv_row(row, name, start)
            problems += bad
            if not bad:
                records.append(Record(name, start, decoded))
            start = reader.line_num + 1
    except csv.Error as e:
        problems.append(Problem(name, reader.line_num, "csv", str(e)))
    return records, problems


def _csv_row(row: dict, name: str, line: int) -> tuple[dict, list[Problem]]:
    """Return (row with JSON-encoded message cells decoded and empty metadata dropped, problems)."""
    out, problems = {}, []
    for key, cell in row.items():
        if key is None or cell is None:  # more or fewer cells than header columns
            problems.append(Problem(name, line, "csv", "row has a different number of cells than the header"))
            continue
        if key == "messages" or (key in ("prompt", "chosen", "rejected", "completion") and cell.lstrip()[:1] == "["):
            try:
                value = json.loads(cell)
            except json.JSONDecodeError as e:
                if key == "messages":
                    problems.append(Problem(name, line, key, f"invalid JSON in the cell: {e.msg}"))
                    continue
                value = cell  # a plain string that happens to start with "["
            out[key] = value if key == "messages" or is_turn_list(value) else cell
        elif key == "adversarial" and cell.strip().lower() in ("true", "false"):
            out[key] = cell.strip().lower() == "true"
        elif cell != "" or key not in METADATA_KEYS:
            out[key] = cell
    return out, problems


def _read_parquet(path: Path, name: str) -> tuple[list[Record], list[Problem]]:
    import pyarrow.parquet as pq  # Parquet only: the other formats need no pyarrow import

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises several types for a corrupt or non-parquet file
        return [], [Problem(name, 0, "parquet", f"cannot read: {one_line(e)[:200]}")]
    return [Record(name, i, _drop_nulls(row)) for i, row in enumerate(rows, 1)], []


def _read_saved_dataset(path: Path, name: str) -> tuple[list[Record], list[Problem]]:
    if not (path / "state.json").is_file():
        hint = " (a DatasetDict: pass one split's folder)" if (path / "dataset_dict.json").is_file() else ""
        return [], [Problem(name, 0, "file", f"not a folder written by Dataset.save_to_disk{hint}")]
    from datasets import load_from_disk  # Arrow files + JSON state; no pickles involved

    try:
        rows = load_from_disk(str(path)).to_list()
    except Exception as e:  # corrupt folders fail in many ways inside datasets/pyarrow
        return [], [Problem(name, 0, "file", f"cannot read saved dataset: {one_line(e)[:200]}")]
    return [Record(name, i, _drop_nulls(row)) for i, row in enumerate(rows, 1)], []


def _drop_nulls(row: Any) -> Any:
    """Return `row` without the None cells Arrow adds where other rows had a column (or turn key)."""
    if isinstance(row, dict):
        return {k: _drop_nulls(v) for k, v in row.items() if v is not None}
    if isinstance(row, list):
        return [_drop_nulls(v) for v in row]
    return row
