"""Contestants: the baseline (base model, no adapter) and one adapter per run folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from stylealign.manifest import read_manifest

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
    manifest = read_manifest(run, strict=False)  # an unreadable manifest must not stop the arena
    prompts = manifest.system_prompts()
    if not prompts and manifest.persona_name:
        prompts = _persona_prompts(manifest.persona_name)
    return Contestant(name=name, adapter=name, run=str(run), persona=manifest.persona_name, system_prompts=prompts)


def from_runs(runs: list[str | Path], taken: list[str] | None = None) -> list[Contestant]:
    """Return the baseline plus one contestant per run, with unique names (suffixes on clashes with each other
    and with the names in `taken`)."""
    from stylealign.generate import unique_name

    out, seen = [baseline()], [BASELINE, *(taken or [])]
    for run in runs:
        seen.append(unique_name(Path(run).resolve().name, seen))
        out.append(from_run(run, seen[-1]))
    return out


def _persona_prompts(persona: str) -> dict[str, str]:
    """Return the named persona's system prompts ({} with a warning when it cannot be loaded)."""
    try:
        from stylealign.personas import load_persona

        p = load_persona(persona)
        return {k: v for k in ("en", "zh") if (v := p.system_prompt_for(k))}
    except Exception as e:  # an unknown persona must not stop the arena
        log.warning("persona %r: %s; no persona prompt", persona, e)
        return {}
