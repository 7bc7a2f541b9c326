"""Contestants: the baseline (base model, no adapter) and one adapter per run folder."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

BASELINE = "baseline"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Contestant:
    """A name shown in the arena, the adapter it maps to (None = baseline) and its persona prompts."""

    name: str
    adapter: str | None = None
    run: str | None = None
    persona: str | None = None
    system_prompts: dict[str, str] = field(default_factory=dict)

    def system_prompt(self, language: str = "en") -> str | None:
        """Return the persona's system prompt for a language (falling back to English)."""
        return self.system_prompts.get(language) or self.system_prompts.get("en")


def baseline() -> Contestant:
    return Contestant(BASELINE)


def from_run(run: str | Path, name: str | None = None) -> Contestant:
    """Return the contestant for a run folder, reading the persona prompt from its manifest or persona."""
    run = Path(run)
    name = name or run.resolve().name
    manifest = _read_manifest(run)
    persona = manifest.get("persona")
    prompts = {k: v for k, v in (("en", manifest.get("system_prompt")), ("zh", manifest.get("system_prompt_zh"))) if v}
    if not prompts and persona:
        prompts = _persona_prompts(persona)
    persona_name = persona.get("name") if isinstance(persona, dict) else persona
    return Contestant(name=name, adapter=name, run=str(run), persona=persona_name, system_prompts=prompts)


def from_runs(runs: list[str | Path]) -> list[Contestant]:
    """Return the baseline plus one contestant per run, with unique names (suffixes on clashes)."""
    out, seen = [baseline()], {BASELINE}
    for run in runs:
        name = base = Path(run).resolve().name
        i = 2
        while name in seen:
            name, i = f"{base}-{i}", i + 1
        seen.add(name)
        out.append(from_run(run, name))
    return out


def _read_manifest(run: Path) -> dict:
    path = run / "manifest.json"
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        log.warning("%s: unreadable manifest (%s); no persona prompt", path, e)
        return {}


def _persona_prompts(persona: str | dict) -> dict[str, str]:
    if isinstance(persona, dict):  # a manifest may embed the persona spec itself
        spec = persona
    else:
        try:
            from stylealign.personas import load_persona

            p = load_persona(persona)
            return {k: v for k in ("en", "zh") if (v := p.system_prompt_for(k))}
        except Exception as e:  # an unknown persona must not stop the arena
            log.warning("persona %r: %s; no persona prompt", persona, e)
            return {}
    return {k: v for k, v in (("en", spec.get("system_prompt")), ("zh", spec.get("system_prompt_zh"))) if v}
