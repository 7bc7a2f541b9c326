"""Training data: load files into TRL's conversational formats and validate them before any model loads.

Formats read: JSONL, JSON (a list of rows), CSV (message columns JSON-encoded, or plain strings),
Parquet, and a folder written by `datasets.Dataset.save_to_disk`. Pickles are never loaded.

Rows come back as TRL standard conversational rows plus their metadata columns:
  SFT:        {"messages": [...], "id", "category", "language", "verdict", ...}
  preference: {"prompt": [...], "chosen": [...], "rejected": [...], "id", ..., "rejected_kind"}
  eval suite: {"messages": [... ending with user], "id", "category", "language", "adversarial", "kind"}

Every problem in every file is reported at once in one DataError, one line per problem:
`file:line: field: what is wrong` (line = 1-based JSONL line, CSV line of the row, or record index).
"""

from __future__ import annotations

import csv
import errno
import glob
import io
import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from stylealign.errors import ConfigError, UserError, one_line

ROLES = ("system", "user", "assistant")
METADATA_KEYS = ("id", "category", "language", "verdict", "rejected_kind", "adversarial", "kind", "expected")
CATEGORIES = (
    "tech", "code_review", "career", "money", "life", "health_myths", "science", "history",
    "writing_feedback", "product_advice", "opinions", "roast_my_plan", "refusal", "provocation", "uncertain",
    "math", "languages", "study",  # a tutor's subjects (personas/warm-tutor)
)
LANGUAGES = ("en", "zh")
VERDICTS = ("yes", "no", "depends", "unknown", "refusal", "none")
# "student": the base model's own answer (on-policy), as `stylealign synth` writes them.
REJECTED_KINDS = ("hedge", "wrong", "rude", "student")
# "known_answer": the known-answer suite (rows carry "expected": yes|no).
EVAL_KINDS = ("open", "provocation", "harmful", "drop_persona", "followup", "known_answer")
EXPECTED = ("yes", "no")
SFT_COLUMNS = ("messages",)
PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")
_PICKLE_SUFFIXES = {".pkl", ".pickle", ".pt", ".pth", ".joblib", ".npy", ".npz"}

PathsLike = str | os.PathLike | Iterable[str | os.PathLike]
CountTokens = Callable[[dict], int]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one row: prints as `file:line: field: message`."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


class DataError(UserError, ValueError):
    """Data failed validation; `.problems` holds every Problem, the message has one line per problem."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def message(self) -> str:
        return f"data problems ({len(self.problems)}), found before the step that reads them wrote anything:\n{self}"


@dataclass(frozen=True)
class RowSchema:
    """What a row of one kind must hold: its conversation column and the role its last turn has, the
    single-turn answer columns (preference), and the metadata this project's own files require (with
    `schema`): key -> allowed values (None: any non-empty string or, for adversarial, true/false)."""

    kind: str
    conversation: str
    last_role: str
    answers: tuple[str, ...] = ()
    required: dict[str, tuple[str, ...] | None] = field(default_factory=dict)


_COMMON = {"id": None, "category": CATEGORIES, "language": LANGUAGES}
SCHEMAS = {
    "sft": RowSchema("sft", "messages", "assistant", required={**_COMMON, "verdict": VERDICTS}),
    "preference": RowSchema("preference", "prompt", "user", answers=("chosen", "rejected"),
                            required={**_COMMON, "rejected_kind": REJECTED_KINDS}),
    "eval": RowSchema("eval", "messages", "user", required={**_COMMON, "kind": EVAL_KINDS, "adversarial": None}),
}
STRING_METADATA = ("id", "category", "language", "verdict", "rejected_kind", "kind", "expected")


@dataclass
class Record:
    """One row as read from a file, with where it came from (for messages)."""

    file: str
    line: int
    row: Any


# ---------------------------------------------------------------- public loaders


def load_sft(paths: PathsLike, *, count_tokens: CountTokens | None = None, max_length: int | None = None,
             schema: bool = False) -> list[dict]:
    """Return SFT rows ({"messages": [...]} + metadata) from `paths`, or raise DataError listing every
    problem. `schema=True` also requires this project's metadata (id, category, language, verdict)."""
    return _load(paths, "sft", count_tokens, max_length, schema)


def load_preference(paths: PathsLike, *, count_tokens: CountTokens | None = None, max_length: int | None = None,
                    schema: bool = False) -> list[dict]:
    """Return preference rows ({"prompt", "chosen", "rejected"} + metadata) from `paths`, or raise
    DataError. `schema=True` also requires id, category, language and rejected_kind."""
    return _load(paths, "preference", count_tokens, max_length, schema)


def load_eval(paths: PathsLike, *, schema: bool = True) -> list[dict]:
    """Return eval-suite rows ({"messages": [... ending with user]} + metadata) or raise DataError."""
    return _load(paths, "eval", None, None, schema)


def validate_sft(rows: Sequence[dict], *, count_tokens: CountTokens | None = None, max_length: int | None = None,
                 schema: bool = False, source: str = "<rows>") -> None:
    """Return None when SFT `rows` are valid; else raise DataError (lines are 1-based row indexes)."""
    _raise_if(check_records(_as_records(rows, source), "sft", count_tokens, max_length, schema))


def validate_preference(rows: Sequence[dict], *, count_tokens: CountTokens | None = None,
                        max_length: int | None = None, schema: bool = False, source: str = "<rows>") -> None:
    """Return None when preference `rows` are valid; else raise DataError."""
    _raise_if(check_records(_as_records(rows, source), "preference", count_tokens, max_length, schema))


def validate_eval(rows: Sequence[dict], *, schema: bool = True, source: str = "<rows>") -> None:
    """Return None when eval-suite `rows` are valid; else raise DataError."""
    _raise_if(check_records(_as_records(rows, source), "eval", None, None, schema))


def _load(paths, kind, count_tokens, max_length, schema) -> list[dict]:
    records, problems = read_records(paths)
    problems += check_records(records, kind, count_tokens, max_length, schema)
    _raise_if(sort_problems(problems))
    return [r.row for r in records]


def sort_problems(problems: list[Problem]) -> list[Problem]:
    """Return `problems` ordered by file (in order of first mention) then line, stable otherwise."""
    rank: dict[str, int] = {}
    for p in problems:
        rank.setdefault(p.file, len(rank))
    return sorted(problems, key=lambda p: (rank[p.file], p.line))


def _raise_if(problems: list[Problem]) -> None:
    if problems:
        raise DataError(problems)


def _as_records(rows: Sequence[dict], source: str) -> list[Record]:
    return [Record(source, i, row) for i, row in enumerate(rows, 1)]


# ---------------------------------------------------------------- reading files


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
        return [], [Problem(name, 1, "json", f"expected a JSON list of rows, got {_kind(data)}")]
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
            out[key] = value if key == "messages" or _is_turn_list(value) else cell
        elif key == "adversarial" and cell.strip().lower() in ("true", "false"):
            out[key] = cell.strip().lower() == "true"
        elif cell != "" or key not in METADATA_KEYS:
            out[key] = cell
    return out, problems


def _is_turn_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(t, dict) for t in value)


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


# ---------------------------------------------------------------- validation


def check_records(records: list[Record], kind: str, count_tokens: CountTokens | None = None,
                  max_length: int | None = None, schema: bool = False) -> list[Problem]:
    """Return every problem in `records` of `kind` ("sft", "preference", "eval"). Plain-string prompt /
    chosen / rejected / completion cells are converted to turn lists in place first."""
    problems: list[Problem] = []
    seen_content: dict[str, Record] = {}
    seen_ids: dict[str, Record] = {}
    for record in records:
        bad = _problem_adder(record, problems)
        if not isinstance(record.row, dict):
            bad("row", f"expected a JSON object, got {_kind(record.row)}")
            continue
        record.row = normalize_row(record.row, kind)
        before = len(problems)
        _check_metadata(record.row, kind, schema, bad)
        _check_structure(record.row, kind, bad)
        if len(problems) > before:
            continue  # duplicates and lengths only make sense for well-formed rows
        _check_duplicate(record, kind, seen_content, bad)
        _check_length(record.row, kind, count_tokens, max_length, bad)
        if isinstance(record.row.get("id"), str):
            first = seen_ids.setdefault(record.row["id"], record)
            if first is not record:
                bad("id", f"duplicate id {record.row['id']!r} (first at {first.file}:{first.line})")
    return problems


def _problem_adder(record: Record, problems: list[Problem]) -> Callable[[str, str], None]:
    return lambda field, message: problems.append(Problem(record.file, record.line, field, message))


def normalize_row(row: dict, kind: str) -> dict:
    """Return `row` with plain strings turned into turn lists: prompt -> [user], chosen/rejected ->
    [assistant]; an SFT prompt/completion pair (strings or lists) becomes "messages"."""
    row = dict(row)
    if kind == "sft" and "messages" not in row and "prompt" in row and "completion" in row:
        prompt, completion = row.pop("prompt"), row.pop("completion")
        row["messages"] = _as_turns(prompt, "user") + _as_turns(completion, "assistant")
    if kind == "preference":
        for key, role in (("prompt", "user"), ("chosen", "assistant"), ("rejected", "assistant")):
            if isinstance(row.get(key), str):
                row[key] = _as_turns(row[key], role)
    return row


def _as_turns(value: Any, role: str) -> list:
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    return value if isinstance(value, list) else [value]


def _check_metadata(row: dict, kind: str, schema: bool, bad) -> None:
    """Metadata must be strings when present; with `schema`, this project's keys and values are required."""
    for key in STRING_METADATA:
        if key in row and not isinstance(row[key], str):
            bad(key, f"expected a string, got {_kind(row[key])}")
    if "adversarial" in row and not isinstance(row["adversarial"], bool):
        bad("adversarial", f"expected true or false, got {_kind(row['adversarial'])}")
    if not schema:
        return
    for key, values in SCHEMAS[kind].required.items():
        if key not in row:
            bad(key, "missing")
        elif isinstance(row[key], str) and not row[key].strip():
            bad(key, "empty")
        elif values and isinstance(row[key], str) and row[key] not in values:
            bad(key, f"unknown value {row[key]!r} (expected one of: {', '.join(map(str, values))})")
    if kind == "eval" and isinstance(row.get("expected"), str) and row["expected"] not in EXPECTED:
        bad("expected", f"unknown value {row['expected']!r} (expected one of: yes, no)")
    if kind == "eval" and row.get("kind") == "known_answer" and "expected" not in row:
        bad("expected", "missing (known_answer rows need expected: yes or no)")


def _check_structure(row: dict, kind: str, bad) -> None:
    """Check the row's conversation and answer columns against its kind's RowSchema."""
    schema = SCHEMAS[kind]
    _check_turns(row, schema.conversation, bad, first="user", last=schema.last_role)
    for key in schema.answers:
        _check_completion(row, key, bad)
    if schema.answers and _content(row.get("chosen")) is not None and _content(row.get("chosen")) == _content(row.get("rejected")):
        bad("rejected", "identical to chosen")


def _check_turns(row: dict, key: str, bad, first: str, last: str) -> None:
    """Check row[key] is a conversation: optional system first, then user/assistant alternating."""
    turns = _turn_list(row, key, bad)
    if not turns:
        return
    roles = [_check_turn(turn, f"{key}[{i}]", bad) for i, turn in enumerate(turns)]
    if None in roles:
        return  # order cannot be judged with a broken turn in it
    expected = None  # the role the next non-system turn must have
    for i, role in enumerate(roles):
        if role == "system":
            if i != 0:
                bad(f"{key}[{i}].role", "a system turn is only allowed first")
            continue
        want = expected or first
        if role != want:
            where = "first" if expected is None else f"after {_other(want)!r}"
            bad(f"{key}[{i}].role", f"expected {want!r} {where}, got {role!r}")
            return
        expected = _other(role)
    if expected is None:
        bad(key, f"has no {first!r} turn")
    elif _other(expected) != last:
        bad(key, f"must end with a {last!r} turn, ends with {_other(expected)!r}")


def _check_completion(row: dict, key: str, bad) -> None:
    turns = _turn_list(row, key, bad)
    if not turns:
        return
    roles = [_check_turn(turn, f"{key}[{i}]", bad) for i, turn in enumerate(turns)]
    for i, role in enumerate(roles):
        if role is not None and role != "assistant":
            bad(f"{key}[{i}].role", f"expected 'assistant', got {role!r}")
    if len(turns) > 1:
        bad(key, f"expected a single assistant turn, got {len(turns)}")


def _turn_list(row: dict, key: str, bad) -> list | None:
    if key not in row:
        bad(key, "missing")
        return None
    turns = row[key]
    if not isinstance(turns, list):
        bad(key, f"expected a list of {{role, content}} turns, got {_kind(turns)}")
        return None
    if not turns:
        bad(key, "empty (no turns)")
    return turns


def _check_turn(turn: Any, where: str, bad) -> str | None:
    """Return the turn's role when the turn is well formed, else None (after reporting why)."""
    if not isinstance(turn, dict):
        bad(where, f"expected a {{role, content}} object, got {_kind(turn)}")
        return None
    role, content = turn.get("role"), turn.get("content")
    ok = True
    if role is None or content is None:
        bad(where, f"missing {'role' if role is None else 'content'}")
        ok = False
    if role is not None and not isinstance(role, str):
        bad(f"{where}.role", f"expected a string, got {_kind(role)}")
        ok = False
    elif role is not None and role not in ROLES:
        bad(f"{where}.role", f"unknown role {role!r} (expected system, user or assistant)")
        ok = False
    if content is not None and not isinstance(content, str):
        bad(f"{where}.content", f"expected a string, got {_kind(content)}")
        ok = False
    elif isinstance(content, str) and not content.strip():
        bad(f"{where}.content", "empty")
        ok = False
    return role if ok else None


def _other(role: str) -> str:
    return "assistant" if role == "user" else "user"


def _content(turns: Any) -> str | None:
    """Return a whitespace-normalized text key for a turn list (None if it is not one)."""
    if not _is_turn_list(turns):
        return None
    return json.dumps([[t.get("role"), " ".join(str(t.get("content")).split())] for t in turns], ensure_ascii=False)


def _check_duplicate(record: Record, kind: str, seen: dict[str, Record], bad) -> None:
    columns = PREFERENCE_COLUMNS if kind == "preference" else SFT_COLUMNS
    key = "\x00".join(_content(record.row[c]) or "" for c in columns)
    first = seen.setdefault(key, record)
    if first is not record:
        bad("+".join(columns), f"duplicate of {first.file}:{first.line} (same content)")


def _check_length(row: dict, kind: str, count_tokens, max_length, bad) -> None:
    if count_tokens is None or max_length is None:
        return
    try:
        n = count_tokens(row)
    except Exception as e:  # a user-supplied counter: report, don't crash the whole check
        bad("row", f"count_tokens failed: {one_line(e)[:200]}")
        return
    if n > max_length:
        field = "prompt+chosen+rejected" if kind == "preference" else "messages"
        bad(field, f"too long: {n} tokens > max_length {max_length}")


# ---------------------------------------------------------------- using rows


def split(rows: Sequence[dict], eval_fraction: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Return (train, eval): a deterministic shuffle-split for `seed`. Rows sharing a first user turn
    stay on one side, so the eval set never sees a prompt the model trained on."""
    if not 0 <= eval_fraction < 1:
        raise ConfigError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(first_user_turn(row) or f"#{i}", []).append(i)
    keys = sorted(groups)  # sorted first so the result does not depend on dict order
    random.Random(seed).shuffle(keys)
    want = round(len(rows) * eval_fraction)
    if eval_fraction > 0 and len(rows) > 1:
        want = max(1, want)
    held: set[int] = set()
    for key in keys:
        if len(held) >= want:
            break
        held.update(groups[key])
    train = [row for i, row in enumerate(rows) if i not in held]
    held_rows = [row for i, row in enumerate(rows) if i in held]
    return train, held_rows


def first_user_turn(row: dict) -> str | None:
    """Return the content of the first user turn of an SFT, preference or eval row (None if none)."""
    for turn in row.get("messages") or row.get("prompt") or []:
        if isinstance(turn, dict) and turn.get("role") == "user":
            return turn.get("content")
    return None


def to_dataset(rows: Sequence[dict]):
    """Return a datasets.Dataset with only the TRL columns (messages, or prompt/chosen/rejected),
    each turn reduced to {role, content}."""
    from datasets import Dataset

    if not rows:
        raise ValueError("to_dataset: no rows")
    columns = PREFERENCE_COLUMNS if "chosen" in rows[0] else SFT_COLUMNS
    return Dataset.from_list([{c: [_turn(t) for t in row[c]] for c in columns} for row in rows])


def _turn(turn: dict) -> dict:
    return {"role": turn["role"], "content": turn["content"]}


def with_system_prompt(rows: Sequence[dict], prompt: str | Callable[[dict], str | None]) -> list[dict]:
    """Return copies of `rows` with a system turn first (for bake_system_prompt). `prompt` is a string
    or a function of the row (e.g. by language); rows that already start with a system turn keep it."""
    out = []
    for row in rows:
        text = prompt(row) if callable(prompt) else prompt
        key = "prompt" if "chosen" in row else "messages"
        turns = row[key]
        if text and not (turns and turns[0].get("role") == "system"):
            row = {**row, key: [{"role": "system", "content": text}, *turns]}
        out.append(row)
    return out


def _kind(value: Any) -> str:
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


