"""Personas: a written character (persona.yaml) plus the data files that teach it.

A persona lives in `personas/<name>/persona.yaml`; data globs in it are relative to that folder.
Loading validates the whole file and reports every problem at once, each as `file: field: what`.
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from stylealign.errors import UserError, one_line

PERSONA_FILE = "persona.yaml"
SUPPORTED_LANGUAGES = ("en", "zh")
DATA_KINDS = ("sft", "preference", "baseline", "eval", "probe", "corpus")
TOP_LEVEL_KEYS = {
    "name", "title", "languages", "description", "traits", "style", "system_prompt", "system_prompt_zh",
    "bake_system_prompt", "data", "adapter", "requirements", "targets", "lexicons", "eval_suites",
}
DIRECTIONS = ("up", "down")
LEXICON_KINDS = ("rate", "opener")  # matches per 100 words / 1,000 chars; or: the first sentence matches (0/1)
# Thresholds a persona may declare; the checker enforces only the ones present.
REQUIREMENT_KEYS = {
    "sft_min": int, "pref_min": int, "eval_min": int, "categories_min": int,
    "zh_share_min": float, "multi_turn_share_min": float, "pref_bad_rejected_share_min": float,
    "near_duplicate_max": float,
}


class PersonaError(UserError, ValueError):
    """A persona could not be found or its persona.yaml is invalid; `.problems` lists every problem."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass(frozen=True)
class DataSpec:
    """Globs (relative to the persona folder) for each kind of data file."""

    sft: tuple[str, ...] = ()
    preference: tuple[str, ...] = ()
    baseline: tuple[str, ...] = ()
    eval: tuple[str, ...] = ()
    probe: tuple[str, ...] = ()  # held-out prompts that score training checkpoints (never the eval suites)
    corpus: tuple[str, ...] = ()  # neutral paragraphs ({"id", "language", "text"}) for perplexity drift


@dataclass(frozen=True)
class Persona:
    """One persona as declared in its persona.yaml."""

    name: str
    title: str
    languages: tuple[str, ...]
    description: str
    traits: tuple[str, ...]
    style_do: tuple[str, ...]
    style_dont: tuple[str, ...]
    system_prompt: str
    system_prompt_zh: str | None = None
    bake_system_prompt: bool = False
    adapter: bool = True
    data: DataSpec = field(default_factory=DataSpec)
    requirements: dict[str, float] = field(default_factory=dict)
    targets: dict[str, str] = field(default_factory=dict)  # metric -> "up" / "down": what defines the style
    lexicons: dict[str, dict] = field(default_factory=dict)  # metric -> {"kind", "en", "zh", "description"}
    eval_suites: tuple[str, ...] = ()  # globs: the held-out suites `stylealign eval` uses by default
    path: Path = Path(".")  # the persona folder

    @property
    def file(self) -> Path:
        """Return the path of this persona's persona.yaml."""
        return self.path / PERSONA_FILE

    def files(self, kind: str) -> list[Path]:
        """Return the existing files matched by data.<kind> globs, sorted, without repeats."""
        return self._glob(getattr(self.data, kind))

    def _glob(self, patterns) -> list[Path]:
        found: dict[Path, None] = {}
        for pattern in patterns:
            for match in sorted(glob.glob(str(self.path / pattern))):
                found.setdefault(Path(os.path.normpath(match)), None)
        return list(found)

    def sft_files(self) -> list[Path]:
        """Return the SFT data files (data.sft globs)."""
        return self.files("sft")

    def preference_files(self) -> list[Path]:
        """Return the preference (DPO) data files (data.preference globs)."""
        return self.files("preference")

    def baseline_files(self) -> list[Path]:
        """Return the neutral-baseline answer files (data.baseline globs)."""
        return self.files("baseline")

    def eval_files(self) -> list[Path]:
        """Return the eval-suite files (data.eval globs) checked against this persona's data."""
        return self.files("eval")

    def eval_suite_files(self) -> list[Path]:
        """Return the files matched by the eval_suites globs (the persona's default evaluation suites)."""
        return self._glob(self.eval_suites)

    def probe_files(self) -> list[Path]:
        """Return the held-out probe prompts (data.probe globs) that checkpoint selection scores."""
        return self.files("probe")

    def system_prompt_for(self, language: str | None) -> str:
        """Return the system prompt for `language` ("zh" uses system_prompt_zh when set)."""
        if language == "zh" and self.system_prompt_zh:
            return self.system_prompt_zh
        return self.system_prompt


# ---------------------------------------------------------------- locating personas


def personas_root(root: str | os.PathLike | None = None) -> Path:
    """Return the personas folder: `root`, else $STYLEALIGN_PERSONAS, else `personas/` from the cwd
    upward, else the one next to the package's repo. Raises PersonaError when none exists."""
    if root is not None:
        return Path(root)
    if os.environ.get("STYLEALIGN_PERSONAS"):
        return Path(os.environ["STYLEALIGN_PERSONAS"])
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "personas").is_dir():
            return folder / "personas"
    beside_package = Path(__file__).resolve().parents[1] / "personas"
    if beside_package.is_dir():
        return beside_package
    raise PersonaError(["no personas/ folder found (set STYLEALIGN_PERSONAS or pass root)"])


def load_persona(name_or_path: str | os.PathLike, root: str | os.PathLike | None = None) -> Persona:
    """Return the persona named `name_or_path` under the personas root, or loaded from a folder /
    persona.yaml path. Raises PersonaError listing every problem."""
    given = Path(name_or_path)
    if given.is_file():
        return _load_file(given)
    if not _is_name(given) and (given / PERSONA_FILE).is_file():
        return _load_file(given / PERSONA_FILE)
    base = personas_root(root) if _is_name(given) else None
    if base is not None and (base / given / PERSONA_FILE).is_file():
        return _load_file(base / given / PERSONA_FILE)
    if (given / PERSONA_FILE).is_file():  # a bare folder name relative to the cwd
        return _load_file(given / PERSONA_FILE)
    known = ", ".join(_persona_names(base)) if base is not None else ""
    where = f"{_show(base)}: " if base is not None else ""
    raise PersonaError([f"{where}no persona {str(name_or_path)!r} (known: {known or 'none'})"])


def list_personas(root: str | os.PathLike | None = None) -> list[Persona]:
    """Return every persona under the personas root, sorted by name. Raises PersonaError (all
    problems of all personas) when any persona.yaml is invalid."""
    base = personas_root(root)
    personas, problems = [], []
    for name in _persona_names(base):
        try:
            personas.append(_load_file(base / name / PERSONA_FILE))
        except PersonaError as e:
            problems += e.problems
    if problems:
        raise PersonaError(problems)
    return personas


def _is_name(path: Path) -> bool:
    return len(path.parts) == 1 and not path.suffix


def _persona_names(base: Path) -> list[str]:
    if not base.is_dir():
        return []
    return sorted(p.name for p in base.iterdir() if (p / PERSONA_FILE).is_file())


def _show(path: Path) -> str:
    """Return `path` relative to the cwd when it is below it (shorter messages), else as is."""
    try:
        return str(Path(os.path.abspath(path)).relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- parsing and validation


def _load_file(file: Path) -> Persona:
    where = _show(file)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise PersonaError([f"{where}: yaml: {one_line(e)}"]) from None
    if not isinstance(raw, dict):
        raise PersonaError([f"{where}: (top level): expected a mapping of fields, got {_kind(raw)}"])
    problems: list[str] = []
    persona = _parse(raw, file.parent, lambda f, msg: problems.append(f"{where}: {f}: {msg}"))
    if problems:
        raise PersonaError(problems)
    return persona


def _parse(raw: dict, folder: Path, bad) -> Persona:
    """Return a Persona built from `raw`, calling bad(field, message) for each problem."""
    for key in sorted(set(raw) - TOP_LEVEL_KEYS, key=str):
        bad(key, f"unknown field (known: {', '.join(sorted(TOP_LEVEL_KEYS))})")
    name = _text(raw, "name", bad)
    if name and name != folder.name:
        bad("name", f"{name!r} does not match the folder name {folder.name!r}")
    languages = _strings(raw, "languages", bad, required=True)
    for lang in languages:
        if lang not in SUPPORTED_LANGUAGES:
            bad("languages", f"unsupported language {lang!r} (supported: {', '.join(SUPPORTED_LANGUAGES)})")
    style = raw.get("style", {})
    if not isinstance(style, dict):
        bad("style", f"expected a mapping with 'do' and 'dont', got {_kind(style)}")
        style = {}
    for key in sorted(set(style) - {"do", "dont"}, key=str):
        bad(f"style.{key}", "unknown field (known: do, dont)")
    data = _data_spec(raw.get("data", {}), bad)
    lexicons = _lexicons(raw.get("lexicons"), folder, bad)
    adapter = _flag(raw, "adapter", True, bad)
    if adapter and not data.sft:
        bad("data.sft", "a persona with an adapter needs SFT data (or set adapter: false)")
    if not adapter and (data.sft or data.preference):
        bad("adapter", "adapter: false personas train nothing; remove data.sft / data.preference")
    return Persona(
        name=name or folder.name,
        title=_text(raw, "title", bad),
        languages=tuple(languages),
        description=_text(raw, "description", bad),
        traits=tuple(_strings(raw, "traits", bad)),
        style_do=tuple(_strings(style, "do", bad, prefix="style.")),
        style_dont=tuple(_strings(style, "dont", bad, prefix="style.")),
        system_prompt=_text(raw, "system_prompt", bad),
        system_prompt_zh=_text(raw, "system_prompt_zh", bad, required=False) or None,
        bake_system_prompt=_flag(raw, "bake_system_prompt", False, bad),
        adapter=adapter,
        data=data,
        requirements=_requirements(raw.get("requirements", {}), bad),
        targets=_targets(raw.get("targets"), lexicons, bad),
        lexicons=lexicons,
        eval_suites=tuple(_strings(raw, "eval_suites", bad)),
        path=folder,
    )


def _text(raw: dict, key: str, bad, required: bool = True) -> str:
    """Return raw[key] as a non-empty string ('' after reporting a problem)."""
    value = raw.get(key)
    if value is None:
        if required:
            bad(key, "missing")
        return ""
    if not isinstance(value, str) or not value.strip():
        bad(key, f"expected a non-empty string, got {_kind(value)}")
        return ""
    return value.strip()


def _strings(raw: dict, key: str, bad, required: bool = False, prefix: str = "") -> list[str]:
    """Return raw[key] as a list of non-empty strings (a lone string counts as a list of one)."""
    value = raw.get(key)
    if value is None:
        if required:
            bad(prefix + key, "missing")
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        bad(prefix + key, "expected a list of non-empty strings")
        return []
    if required and not value:
        bad(prefix + key, "must not be empty")
    return [v.strip() for v in value]


def _flag(raw: dict, key: str, default: bool, bad) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        bad(key, f"expected true or false, got {_kind(value)}")
        return default
    return value


def _data_spec(raw: Any, bad) -> DataSpec:
    if raw is None:
        return DataSpec()
    if not isinstance(raw, dict):
        bad("data", f"expected a mapping of {', '.join(DATA_KINDS)} globs, got {_kind(raw)}")
        return DataSpec()
    for key in sorted(set(raw) - set(DATA_KINDS), key=str):
        bad(f"data.{key}", f"unknown data kind (known: {', '.join(DATA_KINDS)})")
    return DataSpec(**{kind: tuple(_strings(raw, kind, bad, prefix="data.")) for kind in DATA_KINDS})


def _requirements(raw: Any, bad) -> dict[str, float]:
    raw = _mapping(raw, "requirements", "a mapping", bad)
    found = {}
    for key, value in raw.items():
        want = REQUIREMENT_KEYS.get(key)
        if want is None:
            bad(f"requirements.{key}", f"unknown requirement (known: {', '.join(sorted(REQUIREMENT_KEYS))})")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            bad(f"requirements.{key}", f"expected a non-negative number, got {value!r}")
        elif want is int and value != int(value):
            bad(f"requirements.{key}", f"expected a whole number, got {value!r}")
        elif want is float and "share" in key and value > 1:
            bad(f"requirements.{key}", f"a share must be between 0 and 1, got {value!r}")
        else:
            found[key] = want(value)
    return found


def _lexicons(raw: Any, folder: Path, bad) -> dict[str, dict]:
    """Return {metric name: {"kind", "description", language: path}} for the persona's own lexicon files."""
    raw = _mapping(raw, "lexicons", "a mapping of metric name -> {kind, en, zh}", bad)
    found = {}
    for name, spec in raw.items():
        where = f"lexicons.{name}"
        if not isinstance(spec, dict):
            bad(where, f"expected a mapping with kind and a file per language, got {_kind(spec)}")
            continue
        for key in sorted(set(spec) - {"kind", "description", *SUPPORTED_LANGUAGES}, key=str):
            bad(f"{where}.{key}", f"unknown field (known: kind, description, {', '.join(SUPPORTED_LANGUAGES)})")
        kind = spec.get("kind", "rate")
        if kind not in LEXICON_KINDS:
            bad(f"{where}.kind", f"{kind!r} is not one of {', '.join(LEXICON_KINDS)}")
        files = {lang: spec[lang] for lang in SUPPORTED_LANGUAGES if lang in spec}
        if not files:
            bad(where, f"needs a lexicon file for at least one language ({', '.join(SUPPORTED_LANGUAGES)})")
        for lang, rel in files.items():
            if not isinstance(rel, str) or not (folder / rel).is_file():
                bad(f"{where}.{lang}", f"no such lexicon file {rel!r} (paths are relative to the persona folder)")
        found[str(name)] = {"kind": kind, "description": str(spec.get("description") or name), **files}
    return found


def _targets(raw: Any, lexicons: dict, bad) -> dict[str, str]:
    """Return {metric: "up"|"down"}; metrics come from the evaluation's registry or the persona's lexicons."""
    raw = _mapping(raw, "targets", "a mapping of metric -> up/down", bad)
    if not raw:
        return {}
    from stylealign.evaluate.metrics import metric_table

    known = {*metric_table(), *lexicons}
    found = {}
    for metric, direction in raw.items():
        if metric not in known:
            bad(f"targets.{metric}", "unknown metric (known: the evaluation's metrics in "
                                     "stylealign/evaluate/metrics.py, or a name under lexicons:)")
        elif direction not in DIRECTIONS:
            bad(f"targets.{metric}", f"expected up or down, got {direction!r}")
        else:
            found[metric] = direction
    return found


def _mapping(raw: Any, key: str, expected: str, bad) -> dict:
    """Return raw when it is a mapping; {} when absent, or after reporting `expected` when it is something else."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        bad(key, f"expected {expected}, got {_kind(raw)}")
        return {}
    return raw


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


