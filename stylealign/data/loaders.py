"""The public loaders and validators: files or rows in, valid rows out, or one DataError listing every problem."""

from __future__ import annotations

from typing import Sequence

from stylealign.data.readers import read_records
from stylealign.data.schema import CountTokens, DataError, PathsLike, Problem, Record
from stylealign.data.validate import check_records


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
