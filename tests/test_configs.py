"""Every shipped YAML parses into what reads it: recipes into Recipe, personas into Persona, the
accelerate configs into accelerate's own ClusterConfig (which refuses unknown keys)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from stylealign.config import RECIPES_DIR, Recipe, load_recipe
from stylealign.personas import load_persona

REPO = Path(__file__).resolve().parents[1]


def shipped(pattern: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", pattern], cwd=REPO, capture_output=True, text=True)
    listed = [REPO / p for p in out.stdout.split()] if out.returncode == 0 else []
    return listed or sorted(REPO.glob(pattern))  # outside a git checkout: the files on disk


def test_every_yaml_is_covered_below():
    files = {p.relative_to(REPO).as_posix() for p in shipped("*.yaml") + shipped("*.yml")}
    covered = {p.relative_to(REPO).as_posix() for p in (*RECIPES_DIR.glob("*.yaml"), *REPO.glob("personas/*/persona.yaml"),
                                                         *REPO.glob("configs/accelerate/*.yaml"))}
    assert files and files <= covered, sorted(files - covered)


@pytest.mark.parametrize("path", sorted(RECIPES_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_recipe_loads(path):
    assert isinstance(load_recipe(str(path)), Recipe)


@pytest.mark.parametrize("path", sorted(REPO.glob("personas/*/persona.yaml")), ids=lambda p: p.parent.name)
def test_persona_loads(path):
    assert load_persona(path.parent).name == path.parent.name


@pytest.mark.parametrize("path", sorted(REPO.glob("configs/accelerate/*.yaml")), ids=lambda p: p.stem)
def test_accelerate_config_loads(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    assert config.num_processes >= 2 and config.distributed_type is not None


def test_command_options_come_from_typed_config():
    import dataclasses

    from stylealign.arena.settings import ArenaConfig, ExportConfig, Limits
    from stylealign.cli import build_parser
    from stylealign.commands.bench import harness
    from stylealign.options import config_from_args

    for cls in (ArenaConfig, ExportConfig, Limits, harness().Settings):
        assert all(f.metadata.get("help") for f in dataclasses.fields(cls)), cls.__name__
    args = build_parser().parse_args(["arena", "--max-turns", "3", "--no-share", "--adapter", "runs/a"])
    assert config_from_args(args, ArenaConfig).limits == Limits(max_turns=3)
    assert config_from_args(args, ArenaConfig).adapter == ["runs/a"]
    bench = config_from_args(build_parser().parse_args(["bench", "--only", "sft,gen", "--kit-set", "sft.batch_size=2"]),
                             harness().Settings)
    assert bench.areas == ("sft", "gen") and bench.kit_set == {"sft.batch_size": 2} and bench.profile is True
    with pytest.raises(ValueError, match="--max-turns: must be at least 1"):
        Limits(max_turns=0)
    with pytest.raises(ValueError, match="unknown area"):
        harness().Settings(areas="sft,nope")


def _option_classes():
    from stylealign.arena.settings import ArenaConfig, ExportConfig, Limits
    from stylealign.commands import chat, export, personas, quickstart, studio, synth, train
    from stylealign.commands import eval as eval_command
    from stylealign.commands.bench import harness
    from stylealign.evaluate.run import EvalConfig
    from stylealign.scaffold import PersonaDraft
    from stylealign.synth import SynthConfig

    return (ArenaConfig, ExportConfig, Limits, harness().Settings, EvalConfig, eval_command.EvalOptions, export.ExportOptions,
            export.ServeOptions, chat.ChatOptions, chat.SamplingOptions, quickstart.QuickstartOptions, personas.Root,
            personas.Selection, personas.OneSelection, personas.StatsOptions, PersonaDraft, SynthConfig, synth.SynthTarget,
            train.TrainOptions, train.DPOTrainOptions, studio.StudioOptions)


def _actions(parser, path=()):
    """Yield (command path, action) for every argument of every (sub)command."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, (*path, name))
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            yield path, action


def test_every_flag_of_every_command_is_a_typed_config_field_with_help():
    import argparse
    import dataclasses

    from stylealign.cli import build_parser

    fields = {f.name: f for cls in _option_classes() for f in dataclasses.fields(cls) if f.metadata.get("cli") is not False}
    seen = 0
    for path, action in _actions(build_parser()):
        if not path and action.dest == "debug":  # the top-level --debug, read before parsing (cli.main)
            continue
        if action.dest.startswith("recipe:"):  # the recipe's dotted overrides: Recipe's fields (add_recipe_arguments)
            continue
        seen += 1
        where = f"stylealign {' '.join(path)} {'/'.join(action.option_strings) or action.dest}"
        assert action.dest in fields, f"{where}: not a field of a typed config"
        assert action.help and (action.help == argparse.SUPPRESS or action.help.strip()), f"{where}: no help"
    assert seen > 150


def test_every_command_help_renders():
    """argparse formats help with %: a field's help that says "60%" broke `--help` of every command with recipe flags."""
    import argparse

    from stylealign.cli import build_parser

    def parsers(parser, path=()):
        yield path, parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from parsers(sub, (*path, name))

    rendered = [(path, parser.format_help()) for path, parser in parsers(build_parser())]
    assert len(rendered) > 20 and all("usage:" in text for _, text in rendered)
    train_all = dict(rendered)[("train", "all")]
    assert "--select.style-enough" in train_all and "0.6" in train_all


def test_recipe_flags_speak_the_cli_dialect_and_take_the_field_names_too():
    """`--sft.max-steps` like every other flag; `--sft.max_steps` (the YAML's and TRL's spelling) means the same,
    for the recipe's fields and for a TRL field the recipe passes through."""
    from stylealign.cli import build_parser
    from stylealign.config import recipe_from_args

    shown = [s for path, a in _actions(build_parser()) if path == ("train", "all") and a.help != "==SUPPRESS=="
             for s in a.option_strings]
    assert "--sft.max-steps" in shown and "--max-length" in shown and not [s for s in shown if "_" in s]
    parse = build_parser().parse_args
    kebab = recipe_from_args(parse(["train", "all", "--sft.max-steps", "7", "--max-length", "99", "--lora.target-modules", "q_proj"]))
    snake = recipe_from_args(parse(["train", "all", "--sft.max_steps", "7", "--max_length", "99", "--lora.target_modules", "q_proj"]))
    assert kebab == snake and (kebab.sft.max_steps, kebab.max_length) == (7, 99)


def test_an_on_off_field_written_bare_in_yaml_reads_as_the_string(tmp_path):
    """YAML 1.1 reads `compile: on` as a boolean; a string field with on/off choices takes it as written, and
    the bench's --kit-set compile=on (parsed the same way) reaches the recipe."""
    from stylealign.commands.bench import harness
    from stylealign.config import load_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text("compile: on\n")
    assert load_recipe(str(recipe)).compile == "on"
    assert load_recipe(None, {"compile": False}).compile == "off"
    assert load_recipe(None, harness().settings._kit_set("compile=on")).compile == "on"


def test_flags_build_their_configs_back(tmp_path):
    from stylealign.cli import build_parser
    from stylealign.commands import chat, export, personas, quickstart, train
    from stylealign.commands import eval as eval_command
    from stylealign.options import config_from_args
    from stylealign.scaffold import PersonaDraft
    from stylealign.synth import SynthConfig

    parse = build_parser().parse_args
    args = parse(["chat", "--greedy", "--prompt", "hi", "--prompt", "yo", "--max-new-tokens", "9"])
    options = config_from_args(args, chat.ChatOptions)  # one object per command, its groups inside
    cfg = options.sampling.generation_config()
    assert options.prompt == ["hi", "yo"] and (cfg.do_sample, cfg.max_new_tokens) == (False, 9)
    ev = config_from_args(parse(["eval", "--adapter", "r", "--limit", "3", "--greedy", "--no-plots"]), eval_command.EvalOptions)
    assert (ev.adapter, ev.scoring.limit, ev.scoring.plots, ev.sampling.greedy) == (["r"], 3, False, True)
    assert config_from_args(parse(["quickstart", "--no-arena"]), quickstart.QuickstartOptions).arena is False
    assert config_from_args(parse(["quickstart"]), quickstart.QuickstartOptions) == quickstart.QuickstartOptions()
    opts = config_from_args(parse(["export", "runs/r", "--no-check", "--to", "gguf"]), export.ExportOptions)
    assert (opts.run, opts.check, opts.to) == ("runs/r", False, "gguf")
    synth = config_from_args(parse(["synth", "p", "--teacher", "file:x.jsonl", "--topic", "a:b", "--quiet"]), SynthConfig)
    assert (synth.teacher, synth.topics, synth.progress) == ("file:x.jsonl", ("a:b",), False)
    draft = config_from_args(parse(["personas", "new", "x", "--language", "zh", "--target", "asks_back=up"]), PersonaDraft)
    assert (draft.name, draft.languages, draft.targets, draft.title) == ("x", ("zh",), {"asks_back": "up"}, "")
    assert config_from_args(parse(["personas", "new", "x"]), PersonaDraft).languages == ("en",)
    stats = personas.selection(parse(["personas", "--root", str(tmp_path), "stats", "--json"]), personas.StatsOptions)
    assert (stats.name, stats.root, stats.json, stats.markdown) == (None, str(tmp_path), True, False)
    dpo = config_from_args(parse(["train", "dpo", "--init", "runs/s", "--data", "a.jsonl"]), train.DPOTrainOptions)
    assert (dpo.init, dpo.data, dpo.persona) == ("runs/s", ["a.jsonl"], "sharp-candid")
    for argv in (["personas", "stats", "--json", "--markdown"], ["synth", "p"], ["export"]):  # exclusive, required
        with pytest.raises(SystemExit):
            parse(argv)
    with pytest.raises(ValueError, match="temperature"):
        config_from_args(parse(["synth", "p", "--teacher", "t", "--temperature", "-1"]), SynthConfig)
    assert config_from_args(parse(["synth", "p", "--teacher", "t", "--temperature", "0"]), SynthConfig).temperature == 0
    with pytest.raises(ValueError, match="sampling needs temperature"):
        config_from_args(parse(["chat", "--temperature", "0"]), chat.ChatOptions)
