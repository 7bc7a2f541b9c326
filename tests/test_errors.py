"""User errors end in one line on stderr (`stylealign: error: what, where, how to fix`), a non-zero exit
code and no traceback; `--debug` shows the traceback instead."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from stylealign.cli import main
from stylealign.config import load_recipe

PROGRESS = re.compile(r"\d+%\||\[A$|^\s*\[A")  # tqdm bars (weights, tokenizing, training steps)


def fails_with(capsys, argv: list[str], *phrases: str, code: int = 2) -> str:
    """Run the CLI in-process; assert exit `code` and, besides progress bars, exactly one `stylealign: error:`
    line holding `phrases` (so no traceback)."""
    rc = main(argv)
    err = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines()
           if line.strip() and not PROGRESS.search(line)]
    assert rc == code, err
    assert len(err) == 1 and err[0].startswith("stylealign: error: "), err
    for phrase in phrases:
        assert phrase in err[0], err[0]
    return err[0]


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
    with pytest.raises(ValueError, match=r"r\.yaml\.sft\.learning_rate: expected a number, got 'fast'"):
        load_recipe(str(good))
    good.write_text("sft:\n  max_steps: 2.5\n")
    with pytest.raises(ValueError, match=r"sft\.max_steps: expected a whole number, got 2\.5"):
        load_recipe(str(good))


@pytest.mark.parametrize("flag,value,field", [("--sft.max_steps", "0", "max_steps"), ("--sft.max_steps", "-3", "max_steps"),
                                              ("--sft.batch_size", "0", "batch_size"),
                                              ("--sft.learning_rate", "-1e-4", "learning_rate"),
                                              ("--sft.learning_rate", "0", "learning_rate")])
def test_zero_or_negative_settings(capsys, train_args, flag, value, field):
    fails_with(capsys, train_args + [f"{flag}={value}"], f"recipe.sft: {field} must be", f"got {float(value):g}"
               if field == "learning_rate" else f"got {value}")


def test_missing_base_folder(capsys, train_args):
    fails_with(capsys, train_args + ["--base", "/nonexistent/model"], "--base /nonexistent/model: no such folder")


def test_hub_id_without_network_fails_at_once(capsys, train_args, monkeypatch):
    for offline in ("1", "0"):  # told offline, or a Hub endpoint that refuses connections
        monkeypatch.setenv("HF_HUB_OFFLINE", offline)
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
        start = time.time()
        fails_with(capsys, train_args + ["--base", "someorg/some-model"], "--base someorg/some-model: not in the "
                   "Hugging Face cache and the Hub is unreachable", "local HF model folder")
        assert time.time() - start < 10, "no minutes of retries"


def test_corrupted_adapter(capsys, adapters, tiny_model_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(adapters[0], broken)
    weights = broken / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    fails_with(capsys, ["chat", "--adapter", str(broken), "--base", str(tiny_model_dir), "--prompt", "hi"],
               f"{weights}: not a readable safetensors file", "corrupted or truncated")


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
