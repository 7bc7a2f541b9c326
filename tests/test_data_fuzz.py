"""Property-based fuzzing (hypothesis) of the data loaders and the persona parser: every generated input either
loads or fails with the kit's own error naming the file (and line, or field), never another exception.

Fixed budgets (derandomized, no deadline) keep the whole file to seconds in CI."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stylealign import data
from stylealign.personas import TOP_LEVEL_KEYS, PersonaError, load_persona

BUDGET = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))

scalars = st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True) | st.text(max_size=12)
ROLES = st.sampled_from(["user", "assistant", "system", "tool", "", "USER"])
turn = st.fixed_dictionaries({"role": ROLES | scalars, "content": st.text(max_size=20) | scalars},
                             optional={"extra": scalars})
turns = st.lists(turn | scalars, max_size=4) | scalars
KEYS = ["messages", "prompt", "chosen", "rejected", "id", "language", "category", "verdict", "rejected_kind"]
row = st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), turns | scalars, max_size=6)
json_line = row.map(lambda r: json.dumps(r, ensure_ascii=False)) | st.text(max_size=30)
raw_line = json_line | st.binary(max_size=20).map(lambda b: b.decode("latin-1"))


def _tmp(name: str, content: bytes) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="fuzz-"))
    path = folder / name
    path.write_bytes(content)
    return path


def _loads_or_names_the_file(loader, path: Path, **kw) -> None:
    try:
        rows = loader([path], **kw)
    except data.DataError as e:
        assert e.problems, "a DataError lists its problems"
        for p in e.problems:
            assert str(p).startswith(f"{p.file}:{p.line}: ") and Path(p.file).name == path.name, str(p)
            assert isinstance(p.line, int) and p.line >= 0
    else:
        assert isinstance(rows, list)


@BUDGET
@given(lines=st.lists(raw_line, max_size=6), kind=st.sampled_from(["sft", "preference", "eval"]))
def test_jsonl_loaders_never_crash(lines, kind):
    path = _tmp("rows.jsonl", "\n".join(lines).encode("utf-8", "surrogatepass"))
    loader = {"sft": data.load_sft, "preference": data.load_preference, "eval": data.load_eval}[kind]
    _loads_or_names_the_file(loader, path)


@BUDGET
@given(blob=st.binary(max_size=64) | st.lists(row, max_size=4).map(lambda rs: json.dumps(rs).encode()),
       suffix=st.sampled_from([".jsonl", ".json", ".csv"]))
def test_any_bytes_in_any_supported_format(blob, suffix):
    _loads_or_names_the_file(data.load_sft, _tmp("rows" + suffix, blob))
    _loads_or_names_the_file(data.load_preference, _tmp("rows" + suffix, blob))


@BUDGET
@given(rows=st.lists(row, min_size=1, max_size=4), limit=st.integers(1, 40))
def test_token_limits_never_crash(rows, limit):
    path = _tmp("rows.jsonl", "\n".join(json.dumps(r) for r in rows).encode())
    _loads_or_names_the_file(data.load_sft, path, count_tokens=lambda r: len(json.dumps(r)), max_length=limit)


persona_value = scalars | st.lists(scalars, max_size=3) | st.dictionaries(st.text(max_size=6), scalars, max_size=3)
persona_doc = st.dictionaries(st.sampled_from(sorted(TOP_LEVEL_KEYS)) | st.text(max_size=8), persona_value, max_size=8)


@BUDGET
@given(doc=persona_doc.map(lambda d: yaml.safe_dump(d, allow_unicode=True)) | st.text(max_size=60))
def test_persona_parser_never_crashes(doc):
    folder = Path(tempfile.mkdtemp(prefix="fuzz-")) / "p"
    folder.mkdir()
    (folder / "persona.yaml").write_text(doc, encoding="utf-8", errors="surrogatepass")
    try:
        persona = load_persona(folder)
    except PersonaError as e:
        assert e.problems
        for problem in e.problems:
            assert "persona.yaml: " in problem, problem  # names the file, then the field or the YAML line
    else:
        assert persona.name == "p"
