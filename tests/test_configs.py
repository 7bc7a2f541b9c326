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
    from stylealign.config import config_from_args

    for cls in (ArenaConfig, ExportConfig, Limits, harness().Settings):
        assert all(f.metadata.get("help") for f in dataclasses.fields(cls)), cls.__name__
    args = build_parser().parse_args(["arena", "--max-turns", "3", "--no-share", "--adapter", "runs/a"])
    assert config_from_args(args, Limits) == Limits(max_turns=3)
    assert config_from_args(args, ArenaConfig).adapter == ["runs/a"]
    bench = config_from_args(build_parser().parse_args(["bench", "--only", "sft,gen", "--kit-set", "sft.batch_size=2"]),
                             harness().Settings)
    assert bench.areas == ("sft", "gen") and bench.kit_set == {"sft.batch_size": 2} and bench.profile is True
    with pytest.raises(ValueError, match="max_turns"):
        Limits(max_turns=0)
    with pytest.raises(ValueError, match="unknown area"):
        harness().Settings(areas="sft,nope")
