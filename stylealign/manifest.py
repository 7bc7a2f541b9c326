"""The run manifest (runs/<run>/manifest.json): what was trained, from what, how, and what it measured.

`RunManifest` is the one typed view of that file; `read_manifest` and `write_manifest` are the only
places that read or write it. The JSON format is the one runs have always had (schema_version 1):
keys this version does not know are kept in `extra` and written back unchanged, and a manifest with
keys missing (an older or hand-written one) reads with their defaults.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from stylealign.errors import UserError
from stylealign.files import write_json

FILE = "manifest.json"
SCHEMA_VERSION = 1
log = logging.getLogger(__name__)


@dataclass
class RunManifest:
    """A run's manifest; the dict-valued blocks keep the layouts train.job and selection document where they fill them."""

    schema_version: int = SCHEMA_VERSION
    persona: str | dict | None = None  # the persona's name; a hand-written manifest may embed the spec
    persona_path: str | None = None
    system_prompt: str | None = None
    system_prompt_zh: str | None = None
    bake_system_prompt: bool = False
    base_model: dict = field(default_factory=dict)  # name, path, sha256, quant, dtype
    init_adapter: str | None = None
    data: dict = field(default_factory=dict)  # stage -> {files, train_rows, eval_rows}
    recipe: dict = field(default_factory=dict)  # Recipe.to_dict()
    stages: dict = field(default_factory=dict)  # stage -> the trainer's summary
    versions: dict = field(default_factory=dict)
    wall_s: float | None = None
    peak_memory_mb: dict = field(default_factory=dict)
    finished: str | None = None
    selection: dict = field(default_factory=dict)  # select: rule, metric (resolved), baseline, candidates, selected, rule_met
    red_flags: list = field(default_factory=list)  # [{"code", "message"}]: what a user of this adapter must know
    extra: dict = field(default_factory=dict)  # keys this version does not know, kept as they were

    @classmethod
    def from_dict(cls, data: dict) -> RunManifest:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in data.items() if k in known},
                   extra={k: v for k, v in data.items() if k not in known})

    def to_dict(self) -> dict:
        """Return the manifest as written to manifest.json (unknown keys last)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "extra"}
        if not self.red_flags:  # written only when there are some, so a manifest without any reads back as it was
            del out["red_flags"]
        return {**out, **self.extra}

    @property
    def persona_name(self) -> str | None:
        return self.persona.get("name") if isinstance(self.persona, dict) else self.persona

    @property
    def base_name(self) -> str | None:
        return (self.base_model or {}).get("name")

    @property
    def base_quant(self) -> str | None:
        return (self.base_model or {}).get("quant")

    def system_prompts(self) -> dict[str, str]:
        """Return {language: prompt} for the languages the manifest (or its embedded persona) has a prompt for."""
        source = self.persona if isinstance(self.persona, dict) and not self.system_prompt else vars(self)
        return {k: v for k, v in (("en", source.get("system_prompt")), ("zh", source.get("system_prompt_zh"))) if v}


def manifest_path(path: str | Path) -> Path | None:
    """Return the manifest.json of a run folder, or of the run an adapter folder sits in; None if neither has one."""
    for candidate in (Path(path) / FILE, Path(path).parent / FILE):
        if candidate.is_file():
            return candidate
    return None


def read_manifest(path: str | Path, strict: bool = True) -> RunManifest:
    """Return the manifest of a run folder (or of the run an adapter folder sits in); an empty one for a
    bare adapter folder. An unreadable file is a UserError naming it, or with strict=False a warning and
    an empty manifest (for callers that can go on without it)."""
    file = manifest_path(path)
    if file is None:
        return RunManifest()
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as e:
        if strict:
            raise UserError(f"{file}: unreadable run manifest ({e}); retrain the run or restore the file") from None
        log.warning("%s: unreadable manifest (%s); going on without it", file, e)
        return RunManifest()
    return RunManifest.from_dict(data)


def write_manifest(folder: str | Path, manifest: RunManifest) -> Path:
    """Write folder/manifest.json atomically; return its path."""
    return write_json(Path(folder) / FILE, manifest.to_dict())
