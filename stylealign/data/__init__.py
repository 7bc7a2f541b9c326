"""Training data: load files into TRL's conversational formats and validate them before any model loads.

Formats read: JSONL, JSON (a list of rows), CSV (message columns JSON-encoded, or plain strings),
Parquet, and a folder written by `datasets.Dataset.save_to_disk`. Pickles are never loaded.

Rows come back as TRL standard conversational rows plus their metadata columns:
  SFT:        {"messages": [...], "id", "category", "language", "verdict", ...}
  preference: {"prompt": [...], "chosen": [...], "rejected": [...], "id", ..., "rejected_kind"}
  eval suite: {"messages": [... ending with user], "id", "category", "language", "adversarial", "kind"}

Every problem in every file is reported at once in one DataError, one line per problem:
`file:line: field: what is wrong` (line = 1-based JSONL line, CSV line of the row, or record index).

The package is layered so that each part can be read alone: `schema` (vocabularies, RowSchema,
Record, Problem, DataError) under `readers` (files -> Records) and `validate` (Records -> Problems),
under `loaders` (the public load_* / validate_*); `rows` holds helpers over loaded rows (split,
system prompts). Callers import from `stylealign.data`, which re-exports all of it.
"""

from stylealign.data.loaders import (
    load_eval,
    load_preference,
    load_sft,
    sort_problems,
    validate_eval,
    validate_preference,
    validate_sft,
)
from stylealign.data.readers import expand_paths, read_file, read_records, show_path
from stylealign.data.rows import first_user_turn, split, with_system_prompt
from stylealign.data.schema import (
    CATEGORIES,
    EVAL_KINDS,
    EXPECTED,
    LANGUAGES,
    METADATA_KEYS,
    PREFERENCE_COLUMNS,
    REJECTED_KINDS,
    ROLES,
    SCHEMAS,
    SFT_COLUMNS,
    STRING_METADATA,
    VERDICTS,
    CountTokens,
    DataError,
    PathsLike,
    Problem,
    Record,
    RowSchema,
)
from stylealign.data.validate import check_records, normalize_row

__all__ = [
    "CATEGORIES", "EVAL_KINDS", "EXPECTED", "LANGUAGES", "METADATA_KEYS", "PREFERENCE_COLUMNS", "REJECTED_KINDS",
    "ROLES", "SCHEMAS", "SFT_COLUMNS", "STRING_METADATA", "VERDICTS", "CountTokens", "DataError", "PathsLike",
    "Problem", "Record", "RowSchema", "check_records", "expand_paths", "first_user_turn", "load_eval",
    "load_preference", "load_sft", "normalize_row", "read_file", "read_records", "show_path", "sort_problems",
    "split", "validate_eval", "validate_preference", "validate_sft", "with_system_prompt",
]
