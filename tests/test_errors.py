"""User errors end in one line on stderr (`stylealign: error: what, where, how to fix`), a non-zero exit
code and no traceback; `--debug` shows the traceback instead."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import fails_with

from stylealign.cli import main
from stylealign.config import load_recipe


@pytest.fixture
def train_args(small_persona, tiny_model_dir, tmp_path) -> list[str]:
    return ["train", "sft", "--persona", str(small_persona), "--base", str(tiny_model_dir), "--quant", "none",
            "--dtype", "fp32", "--run", str(tmp_path / "run")]


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_model_dir):
    """Return (an adapter folder for the tiny model, a second tiny base of another width)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

    root = tmp_path_factory.mktemp("adapters")
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False)).save_pretrained(root / "ad")
    config = LlamaConfig.from_pretrained(tiny_model_dir)
    config.hidden_size, config.intermediate_size = 32, 64
    LlamaForCausalLM(config).save_pretrained(root / "narrow")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if (tiny_model_dir / name).exists():
            shutil.copy(tiny_model_dir / name, root / "narrow" / name)
    return root / "ad", root / "narrow"


def test_persona_with_wrong_types(capsys, small_persona, train_args):
    spec = small_persona / "persona.yaml"
    spec.write_text(spec.read_text(encoding="utf-8").replace("bake_system_prompt: false", "bake_system_prompt: 3")
                    .replace("bake_system_prompt: true", "bake_system_prompt: 3"), encoding="utf-8")
    fails_with(capsys, train_args, "persona.yaml: bake_system_prompt: expected true or false, got int")


def test_recipe_name_typo(capsys, train_args):
    fails_with(capsys, train_args + ["--recipe", "smollm2-135m_qlora_cpuu"], "no shipped recipe",
               "did you mean 'smollm2-135m_qlora_cpu'")


def test_recipe_field_typo_suggests_the_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sft:\n  learning_rat: 1.0e-4\n")
    with pytest.raises(ValueError, match="did you mean 'learning_rate' for 'learning_rat'"):
        load_recipe(str(bad))


def test_yaml_values_are_typed_by_their_field(tmp_path):
    """PyYAML reads `1e-4` as a string and `1e3` as a float: both are what the field says."""
    good = tmp_path / "r.yaml"
    good.write_text("sft:\n  learning_rate: 1e-4\n  max_steps: 1e3\n  batch_size: '4'\n  padding_free: 'no'\n")
    recipe = load_recipe(str(good))
    assert recipe.sft.learning_rate == 1e-4 and isinstance(recipe.sft.learning_rate, float)
    assert recipe.sft.max_steps == 1000 and isinstance(recipe.sft.max_steps, int)
    assert recipe.sft.batch_size == 4 and recipe.sft.padding_free is False
    good.write_text("sft:\n  learning_rate: fast\n")
    with pytest.raises(ValueError, match=r"r\.yaml: sft\.learning_rate: expected a number, got 'fast'"):
        load_recipe(str(good))
    good.write_text("sft:\n  max_steps: 2.5\n")
    with pytest.raises(ValueError, match=r"sft\.max_steps: expected a whole number, got 2\.5"):
        load_recipe(str(good))


@pytest.mark.parametrize("flag,value,field", [("--sft.max-steps", "0", "max_steps"), ("--sft.max-steps", "-3", "max_steps"),
                                              ("--sft.batch-size", "0", "batch_size"),
                                              ("--sft.learning-rate", "-1e-4", "learning_rate"),
                                              ("--sft.learning-rate", "0", "learning_rate")])
def test_zero_or_negative_settings(capsys, train_args, flag, value, field):
    fails_with(capsys, train_args + [f"{flag}={value}"], f"{flag} {value if field != 'learning_rate' else float(value)}: sft: {field} must be", f"got {float(value):g}"
               if field == "learning_rate" else f"got {value}")


def test_missing_base_folder(capsys, train_args):
    fails_with(capsys, train_args + ["--base", "/nonexistent/model"], "--base /nonexistent/model: no such folder")


def test_hub_id_without_network_fails_at_once(capsys, train_args, monkeypatch):
    for offline in ("1", "0"):  # told offline, or a Hub endpoint that refuses connections
        monkeypatch.setenv("HF_HUB_OFFLINE", offline)
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
        fails_with(capsys, train_args + ["--base", "someorg/some-model"], "--base someorg/some-model: not in the "
                   "Hugging Face cache and the Hub is unreachable", "local HF model folder")


def test_corrupted_adapter(capsys, adapters, tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(adapters[0], broken)
    weights = broken / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    fails_with(capsys, ["chat", "--adapter", str(broken), "--base", str(tiny_model_dir), "--prompt", "hi"],
               f"{weights}: not a readable safetensors file", "corrupted or truncated")


def test_an_adapter_config_that_is_not_json_is_one_line(capsys, adapters, tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(adapters[0], broken)
    (broken / "adapter_config.json").write_text("{ truncated")
    fails_with(capsys, ["chat", "--adapter", str(broken), "--base", str(tiny_model_dir), "--prompt", "hi"],
               f"{broken / 'adapter_config.json'}: not a readable adapter config", "retrain or restore")


def test_adapter_trained_on_another_base_names_both(capsys, adapters, tiny_model_dir):
    adapter, narrow = adapters
    line = fails_with(capsys, ["chat", "--adapter", str(adapter), "--base", str(narrow), "--prompt", "hi"],
                      f"was trained on base '{tiny_model_dir}'", f"not on '{narrow}'", f"pass --base {tiny_model_dir}")
    assert "q_proj" in line


def test_read_only_output_folder(capsys, train_args, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        if os.geteuid() == 0:
            pytest.skip("cannot make a read-only folder here (root without chattr)")
        folder.chmod(0o555)
    try:
        fails_with(capsys, train_args + ["--run", str(folder / "run")], str(folder / "run"), "choose a folder you can write to")
    finally:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
        folder.chmod(0o755)


def test_debug_shows_the_traceback(train_args):
    with pytest.raises(Exception, match="no such folder"):
        main(["--debug", *train_args, "--base", "/nonexistent/model"])


def test_real_process_prints_one_line_and_debug_a_traceback(tmp_path):
    argv = [sys.executable, "-m", "stylealign", "train", "sft", "--base", "/nonexistent/model", "--run", str(tmp_path / "r")]
    plain = subprocess.run(argv, capture_output=True, text=True)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines() == [
        "stylealign: error: --base /nonexistent/model: no such folder; pass an existing HF model folder, or the "
        "embedded alias smollm2-135m"]
    debug = subprocess.run(argv + ["--debug"], capture_output=True, text=True)
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "UserError" in debug.stderr


# ---- one error path: a user error is one line (exit 2), anything else is a bug (exit 1) --------------------------
def bug_line(capsys, argv: list[str]) -> Path:
    """Run the CLI; assert one 'internal error' line, exit 1; return the saved traceback's path."""
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("stylealign: internal error (a bug"), err
    saved = Path(re.search(r"traceback saved to (\S+);", err[0]).group(1))
    assert "Traceback (most recent call last)" in saved.read_text()
    saved.unlink()
    return saved


def test_a_library_value_error_is_a_bug_not_a_user_error(capsys, monkeypatch):
    import stylealign.personas

    def broken(*a, **k):
        raise ValueError("something inside a library went wrong")

    monkeypatch.setattr(stylealign.personas, "list_personas", broken)
    bug_line(capsys, ["personas", "list"])


def test_a_missing_file_inside_the_kit_is_a_bug_a_missing_user_file_is_not(capsys, monkeypatch, tmp_path):
    import stylealign.personas

    own = Path(stylealign.personas.__file__).with_name("missing.yaml")

    def reads_own_file(*a, **k):
        return own.read_text()

    monkeypatch.setattr(stylealign.personas, "list_personas", reads_own_file)
    bug_line(capsys, ["personas", "list"])

    def reads_users_file(*a, **k):
        return (tmp_path / "notes.txt").read_text()

    monkeypatch.setattr(stylealign.personas, "list_personas", reads_users_file)
    fails_with(capsys, ["personas", "list"], f"{tmp_path / 'notes.txt'}: no such file or folder")


def test_a_path_that_is_not_utf8_is_refused_before_any_work(capsys, train_args, tmp_path):
    run = os.fsdecode(os.fsencode(tmp_path) + b"/caf\xe9/run")
    fails_with(capsys, train_args + ["--run", run], "not valid UTF-8", "caf\\udce9")
    assert list(tmp_path.iterdir()) == [tmp_path / "mini"]  # the persona only: no run folder, no lock


@pytest.mark.parametrize("flag, value, table, package", [
    ("--report-to", "wandb", "_REPORT_PACKAGES", "wandb"),
    ("--attn-implementation", "flash_attention_2", "_ATTN_PACKAGES", "flash_attn")])
def test_a_setting_whose_package_is_missing_is_one_line(capsys, train_args, monkeypatch, flag, value, table, package):
    import stylealign.config

    # a package name that cannot be installed, so the test means the same on a machine that has the real one
    monkeypatch.setitem(getattr(stylealign.config, table), value, "no_such_package_for_stylealign")
    fails_with(capsys, train_args + [flag, value], f"{flag[2:].replace('-', '_')} {value!r} needs the no_such_package_for_stylealign "
               "package", "pip install")


@pytest.mark.parametrize("damage", ["truncated weights", "config.json not JSON", "config.json of another shape"])
def test_a_damaged_base_folder_is_one_line(capsys, train_args, tiny_model_dir, tmp_path, damage):
    import json

    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    if damage == "truncated weights":
        weights = base / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    elif damage == "config.json not JSON":
        (base / "config.json").write_text("{ not json")
    else:
        config = json.loads((base / "config.json").read_text())
        config["num_attention_heads"] = 3  # 64 is not divisible by 3
        (base / "config.json").write_text(json.dumps(config))
    fails_with(capsys, train_args + ["--base", str(base)], f"--base {base}: cannot load the", "complete Hugging Face model")


def test_a_bad_flag_is_blamed_on_the_flag_and_a_bad_file_value_on_the_file(capsys, train_args, tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("sft:\n  neutral_mix: 0.2\n")
    line = fails_with(capsys, train_args + ["--recipe", str(recipe), "--sft.neutral-mix", "3"],
                      f"--sft.neutral-mix 3.0 (over {recipe}): sft: need 0 <= neutral_mix <= 1")
    recipe.write_text("sft:\n  neutral_mix: 4\n")
    line = fails_with(capsys, train_args + ["--recipe", str(recipe), "--sft.learning-rate", "1e-4"],
                      f"{recipe}: sft: need 0 <= neutral_mix <= 1")
    assert "--sft.learning-rate" not in line


def test_an_unknown_dpo_loss_type_names_the_choices(capsys, train_args):
    fails_with(capsys, train_args + ["--dpo.loss-type", "bogus"], "--dpo.loss-type bogus: dpo: loss_type 'bogus': unknown loss type",
               "sigmoid, hinge, ipo")


def test_the_dpo_loss_types_are_trls():
    import dataclasses

    from trl import DPOConfig

    from stylealign.config import DPO_LOSSES

    help_text = next(f for f in dataclasses.fields(DPOConfig) if f.name == "loss_type").metadata["help"]
    assert set(re.findall(r"`'(\w+)'`", help_text)) == set(DPO_LOSSES)


def test_link_loops_and_dangling_links_say_so(tmp_path):
    from stylealign.data import read_file

    (tmp_path / "a.jsonl").symlink_to(tmp_path / "b.jsonl")
    (tmp_path / "b.jsonl").symlink_to(tmp_path / "a.jsonl")
    (tmp_path / "c.jsonl").symlink_to(tmp_path / "gone.jsonl")
    assert "loop of symbolic links" in read_file(tmp_path / "a.jsonl")[1][0].message
    assert "symbolic link to" in read_file(tmp_path / "c.jsonl")[1][0].message


def test_an_unreadable_file_gets_a_reading_hint_and_an_unwritable_folder_a_writing_one(tmp_path, monkeypatch):
    import errno

    from stylealign.errors import os_message

    data = tmp_path / "rows.jsonl"
    data.write_text("{}")
    monkeypatch.setattr(os, "access", lambda path, mode: False)  # root reads everything; pretend we are not root
    assert "cannot be read" in os_message(PermissionError(errno.EACCES, "Permission denied", str(data)))
    assert "choose a folder you can write to" in os_message(PermissionError(errno.EACCES, "Permission denied",
                                                                            str(tmp_path / "new.json")))


def test_a_full_disk_names_the_file_being_written(tmp_path, monkeypatch):
    import errno

    from stylealign.errors import describe
    from stylealign.files import append_durable, write_json

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    for write, path in ((append_durable, tmp_path / "log.jsonl"), (write_json, tmp_path / "out.json")):
        with pytest.raises(OSError) as e:
            write(path, {"a": 1} if write is write_json else "x\n")
        assert describe(e.value) == (f"{path}: no space left on the device; free some space or write elsewhere", 2)
    assert not (tmp_path / "out.json").exists() and not list(tmp_path.glob(".out.json*"))  # nothing half-written


@pytest.fixture
def small_disk(tmp_path):
    """Return a folder on a 300 KiB tmpfs (a full disk within seconds of training), unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_disk_during_training_is_one_line(capsys, train_args, small_disk):
    line = fails_with(capsys, train_args + ["--run", str(small_disk / "run")], "no space left on the device",
                      str(small_disk))
    assert "internal error" not in line


def test_synth_into_a_read_only_folder_fails_before_any_work(capsys, small_persona, tmp_path, monkeypatch):
    import stylealign.synth.run

    folder = tmp_path / "ro"
    folder.mkdir()
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        folder.chmod(0o555)
    monkeypatch.setattr(stylealign.synth.run, "build_jobs", lambda *a: pytest.fail("synth started work"))
    try:
        fails_with(capsys, ["synth", str(small_persona), "--teacher", f"file:{small_persona}/data/sft.jsonl",
                            "--out", str(folder / "o.jsonl")], f"{folder}: ", "choose a folder you can write to")
    finally:
        subprocess.run(["chattr", "-i", str(folder)], capture_output=True)
        folder.chmod(0o755)


def test_lora_targets_the_base_lacks_are_one_line(capsys, train_args):
    fails_with(capsys, train_args + ["--lora.target-modules", "q_proj,qkv_fused"],
               "lora.target_modules 'q_proj,qkv_fused': qkv_fused not in this base", "q_proj", "v_proj")


def test_a_run_path_that_is_a_link_loop_is_one_line(capsys, train_args, tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    fails_with(capsys, train_args + ["--run", str(tmp_path / "a")], "a symbolic link to nothing")
    assert not (tmp_path / "a.partial").exists()
