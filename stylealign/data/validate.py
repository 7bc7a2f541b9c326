"""Validating rows against their kind's schema: every problem in every row, not just the first.

`check_records` turns Records (as read) into Problems: metadata types and, with `schema`, this
project's required keys and values; conversation structure (roles, order, the last turn); duplicate
content and ids; and, given a token counter, rows longer than `max_length`. Plain-string columns are
normalised to turn lists first, so each later check sees one shape.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from stylealign.data.schema import (
    EXPECTED,
    PREFERENCE_COLUMNS,
    ROLES,
    SCHEMAS,
    SFT_COLUMNS,
    STRING_METADATA,
    CountTokens,
    Problem,
    Record,
    is_turn_list,
    json_kind,
)
from stylealign.errors import one_line


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
            bad("row", f"expected a JSON object, got {json_kind(record.row)}")
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
            bad(key, f"expected a string, got {json_kind(row[key])}")
    if "adversarial" in row and not isinstance(row["adversarial"], bool):
        bad("adversarial", f"expected true or false, got {json_kind(row['adversarial'])}")
    if not schema:
        return
    for key, values in SCHEMAS[kind].required.items():
        if key not in row:
            bad(key, "missing")
        elif isinstance(row[key], str) and not row[key].strip():
            bad(key, "empty")
        elif values and isinstance(row[key], str) and row[key] not in values:
            bad(key, f"unknown value {row[key]!r} (expected one of: {', '.join(map(str, values))})")
    if kind in ("eval", "sft") and isinstance(row.get("expected"), str) and row["expected"] not in EXPECTED:
        bad("expected", f"unknown value {row['expected']!r} (expected one of: yes, no)")
    if kind == "sft" and row.get("expected") in EXPECTED and row.get("verdict") != row["expected"]:
        bad("expected", f"{row['expected']!r} but verdict is {row.get('verdict')!r}: a known answer's row "
                        "states it (set verdict to the same, or drop expected)")
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
        bad(key, f"expected a list of {{role, content}} turns, got {json_kind(turns)}")
        return None
    if not turns:
        bad(key, "empty (no turns)")
    return turns


def _check_turn(turn: Any, where: str, bad) -> str | None:
    """Return the turn's role when the turn is well formed, else None (after reporting why)."""
    if not isinstance(turn, dict):
        bad(where, f"expected a {{role, content}} object, got {json_kind(turn)}")
        return None
    role, content = turn.get("role"), turn.get("content")
    ok = True
    if role is None or content is None:
        bad(where, f"missing {'role' if role is None else 'content'}")
        ok = False
    if role is not None and not isinstance(role, str):
        bad(f"{where}.role", f"expected a string, got {json_kind(role)}")
        ok = False
    elif role is not None and role not in ROLES:
        bad(f"{where}.role", f"unknown role {role!r} (expected system, user or assistant)")
        ok = False
    if content is not None and not isinstance(content, str):
        bad(f"{where}.content", f"expected a string, got {json_kind(content)}")
        ok = False
    elif isinstance(content, str) and not content.strip():
        bad(f"{where}.content", "empty")
        ok = False
    return role if ok else None


def _other(role: str) -> str:
    return "assistant" if role == "user" else "user"


def _content(turns: Any) -> str | None:
    """Return a whitespace-normalized text key for a turn list (None if it is not one)."""
    if not is_turn_list(turns):
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
