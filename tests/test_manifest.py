"""The run manifest: one typed RunManifest, read and written by stylealign.manifest, same JSON as before."""

import json

import pytest

from stylealign.errors import UserError
from stylealign.manifest import RunManifest, read_manifest, write_manifest

# A manifest as training wrote it before RunManifest existed (schema_version 1), key order included.
OLD = {
    "schema_version": 1, "persona": "sharp-candid", "persona_path": "personas/sharp-candid",
    "system_prompt": "Be sharp.", "system_prompt_zh": "犀利。", "bake_system_prompt": True,
    "base_model": {"name": "smollm2-135m", "path": "/cache/smollm2", "sha256": "ab12", "quant": "nf4", "dtype": "bfloat16"},
    "init_adapter": None,
    "data": {"sft": {"files": [{"path": "a.jsonl", "sha256": "cd", "rows": 12}], "train_rows": 11, "eval_rows": 1}},
    "recipe": {"base": "smollm2-135m", "sft": {"max_steps": 3}}, "stages": {"sft": {"steps": 3}},
    "versions": {"torch": "2.9"}, "wall_s": 12.5, "peak_memory_mb": {"rss": 900.0},
    "finished": "2026-12-01T10:00:00+0000", "selection": {"status": "no candidates"},
}


def test_an_old_manifest_reads_typed_and_writes_back_byte_for_byte(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({**OLD, "added_later": {"x": 1}}, indent=2))
    m = read_manifest(tmp_path)
    assert (m.persona_name, m.base_name, m.base_quant, m.bake_system_prompt) == ("sharp-candid", "smollm2-135m", "nf4", True)
    assert m.system_prompts() == {"en": "Be sharp.", "zh": "犀利。"} and m.stages["sft"]["steps"] == 3
    assert m.extra == {"added_later": {"x": 1}}  # a key this version does not know survives a rewrite
    out = tmp_path / "copy"
    write_manifest(out, m)
    written = json.loads((out / "manifest.json").read_text())
    assert list(written) == list(OLD) + ["added_later"] and written == {**OLD, "added_later": {"x": 1}}


def test_an_adapter_folder_reads_its_runs_manifest_and_a_bare_one_reads_empty(tmp_path):
    (tmp_path / "run" / "adapter").mkdir(parents=True)
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(OLD))
    assert read_manifest(tmp_path / "run" / "adapter").base_name == "smollm2-135m"
    (tmp_path / "bare").mkdir()
    assert read_manifest(tmp_path / "bare") == RunManifest()


def test_a_partial_or_embedded_persona_manifest_reads_with_defaults(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"persona": {"name": "p", "system_prompt": "Be terse."}}))
    m = read_manifest(tmp_path)
    assert m.persona_name == "p" and m.system_prompts() == {"en": "Be terse."}
    assert m.base_name is None and m.selection == {} and not m.bake_system_prompt


def test_an_unreadable_manifest_is_one_line_or_with_strict_false_empty(tmp_path):
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(UserError, match=r"manifest.json: unreadable run manifest"):
        read_manifest(tmp_path)
    assert read_manifest(tmp_path, strict=False) == RunManifest()
