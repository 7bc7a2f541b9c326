"""The CLI is a thin, instant shell; recipes are typed and every shipped one parses."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from stylealign.cli import build_parser
from stylealign.config import RECIPES_DIR, Recipe, load_recipe, recipe_from_args


def _subcommands(parser: argparse.ArgumentParser, prefix=()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from _subcommands(sub, prefix + (name,))


def test_help_of_every_subcommand_works(capsys):
    commands = list(_subcommands(build_parser()))
    for expected in [("train", "sft"), ("train", "dpo"), ("train", "all"), ("chat",), ("quickstart",)]:
        assert expected in commands
    for command in [(), *commands]:
        with pytest.raises(SystemExit) as done:
            build_parser().parse_args([*command, "--help"])
        assert done.value.code == 0, command
        assert "usage: stylealign" in capsys.readouterr().out


def test_help_is_instant_because_heavy_libraries_load_lazily():
    code = "import sys; from stylealign.cli import build_parser; build_parser(); " \
           "print(sorted(m for m in ('torch', 'transformers', 'trl', 'gradio') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("path", sorted(RECIPES_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_recipe_parses(path):
    recipe = load_recipe(str(path))
    assert isinstance(recipe, Recipe) and recipe.quant in ("nf4", "none")
    assert path.stem.split("_")[1] in ("qlora", "lora")  # <model>_<method>_<device>.yaml


def test_recipe_errors_name_the_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("sft:\n  learning_rat: 1.0e-4\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: sft: unknown field\(s\) \['learning_rat'\]"):
        load_recipe(str(bad))
    bad.write_text("quant: int3\n")
    with pytest.raises(ValueError, match="quant must be"):
        load_recipe(str(bad))
    with pytest.raises(FileNotFoundError, match="no shipped recipe"):
        load_recipe("no-such-recipe")


def test_every_recipe_field_is_overridable_on_the_command_line():
    args = build_parser().parse_args(["train", "all", "--recipe", "smollm2-135m_qlora_cpu", "--sft.learning-rate",
                                      "1e-3", "--lora.r", "8", "--quant", "none", "--sft.padding-free", "false"])
    recipe = recipe_from_args(args)
    assert recipe.sft.learning_rate == 1e-3 and recipe.lora.r == 8 and recipe.quant == "none"
    shipped = load_recipe("smollm2-135m_qlora_cpu")
    assert recipe.sft.padding_free is False and recipe.dpo.beta == shipped.dpo.beta  # untouched fields keep the recipe's values
    assert recipe.sft.max_steps == load_recipe("smollm2-135m_qlora_cpu").sft.max_steps
