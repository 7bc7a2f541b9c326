"""A persona's own style targets: the metrics that define its style, the direction it wants, its lexicons.

`persona.yaml` declares `targets: {metric: up|down}` over the evaluation's metrics (metrics.py) and
over `lexicons:` of its own (files in the kit's lexicon format, lexicon.py): a `rate` lexicon
scores matches per 100 English words / 1,000 Chinese characters, an `opener` lexicon scores 1 when
the answer's first sentence matches. The evaluation reads them: the report's metric table takes the
persona's directions (the style markers it does not declare become "neutral"; coherence, truth and
safety metrics keep theirs), the headline leads with them, and `synth` filters pairs whose chosen
answer does not beat the rejected one on them.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

from stylealign.evaluate.metrics import HEADLINE, metric_table

# Style markers whose wanted direction belongs to the persona; the rest (repetition, degeneration,
# language, truth, robustness, relevance) are wanted the same way by every persona.
PERSONA_STYLE = ("hedge_rate", "boilerplate_rate", "booster_rate", "assertiveness", "verdict_first", "list_items",
                 "markdown", "asks_back", "length", "sent_len_mean", "sent_len_cv")
BETTER = {"up": "higher", "down": "lower"}
# The greedy probe's versions of persona style markers (probe.py), and the markers they measure.
PROBE_STYLE = {"probe_verdict_first": ("verdict_first",), "probe_hedge_fill": ("hedge_rate", "boilerplate_rate")}
UNITS = {"rate": "per 100 words / 1,000 chars", "opener": "share"}


def load_targets_persona(name_or_path):
    """Return the Persona for `name_or_path`, or None when it cannot be loaded (no targets then)."""
    if not name_or_path:
        return None
    from stylealign.personas import PersonaError, load_persona

    try:
        return load_persona(name_or_path)
    except PersonaError:
        return None


def persona_metric_table(persona) -> dict[str, dict]:
    """Return the metric table with the persona's directions; each declared metric gets "target": True.

    A persona that declares no targets gets the kit's default table unchanged.
    """
    table = metric_table()
    if persona is None or not persona.targets:
        return table
    for name in PERSONA_STYLE:
        table[name] = {**table[name], "better": "neutral"}
    for name, spec in persona.lexicons.items():
        table[name] = {"layer": "L0-persona", "description": spec["description"], "unit": UNITS[spec["kind"]],
                       "better": "neutral"}
    for name, direction in persona.targets.items():
        table[name] = {**table[name], "better": BETTER[direction], "target": True}
    # the greedy probe's style markers follow the same declaration (neutral when the persona declares none)
    for probe_name, names in PROBE_STYLE.items():
        if probe_name in table:
            wanted = {BETTER[persona.targets[n]] for n in names if n in persona.targets}
            table[probe_name] = {**table[probe_name], "better": wanted.pop() if len(wanted) == 1 else "neutral"}
    return table


@lru_cache(maxsize=64)
def _lexicon_file(path: str, name: str, language: str):
    from stylealign.evaluate.lexicon import parse_lexicon

    return parse_lexicon(Path(path).read_text(encoding="utf-8"), name, language)


def persona_lexicons(persona) -> dict[str, tuple[str, dict]]:
    """Return {metric: (kind, {language: Lexicon})} for the persona's own lexicon files."""
    if persona is None:
        return {}
    out = {}
    for name, spec in persona.lexicons.items():
        langs = {lang: _lexicon_file(str(persona.path / spec[lang]), name, lang) for lang in ("en", "zh") if lang in spec}
        out[name] = (spec["kind"], langs)
    return out


def lexicon_features(text: str, language: str, lexicons: dict[str, tuple[str, dict]]) -> dict[str, float]:
    """Return the value of each persona lexicon metric for one answer (nan when it has no file for the language)."""
    from stylealign.evaluate.markers import rate
    from stylealign.evaluate.text import first_sentence, normalize
    from stylealign.text import length_units

    out = {}
    for name, (kind, by_lang) in lexicons.items():
        lex = by_lang.get(language)
        if lex is None or not text.strip():
            out[name] = math.nan
        elif kind == "opener":
            out[name] = float(lex.count(normalize(first_sentence(text)), normalized=True) > 0)
        else:
            out[name] = rate(lex.count(normalize(text), normalized=True), length_units(text, language), language)
    return out


def answer_metrics(text: str, language: str, lexicons: dict) -> dict[str, float]:
    """Return the L0 markers plus the persona's lexicon metrics for one answer."""
    from stylealign.evaluate.markers import style_markers

    return {**style_markers(text, language), **lexicon_features(text, language, lexicons)}


def add_lexicon_features(state, lexicons: dict) -> None:
    """Add the persona's lexicon metrics to every answer's features in an evaluation state."""
    if not lexicons:
        return
    from stylealign.text import detect_language

    for label, answers in state.answers.items():
        for row, answer, feats in zip(state.rows, answers, state.features[label]):
            lang = detect_language(answer) if answer.strip() else row.get("language", "en")
            feats.update(lexicon_features(answer, lang, lexicons))


def headline_metrics(table: dict[str, dict]) -> list[str]:
    """Return the report's headline metrics: P(persona), the persona's targets, then the kit's usual list."""
    declared = [m for m, d in table.items() if d.get("target")]
    return list(dict.fromkeys(["p_persona", *declared, *(m for m in HEADLINE if m in table)]))


def target_comparison(chosen: str, rejected: str, language: str, persona, lexicons: dict) -> tuple[list[str], list[str]]:
    """Return (wins, losses): the declared targets on which `chosen` beats / trails `rejected` the way the
    persona wants. Metrics undefined for either answer, or equal, count as neither."""
    if not persona or not persona.targets:
        return [], []
    a, b = answer_metrics(chosen, language, lexicons), answer_metrics(rejected, language, lexicons)
    wins, losses = [], []
    for metric, direction in persona.targets.items():
        x, y = a.get(metric, math.nan), b.get(metric, math.nan)
        if math.isnan(x) or math.isnan(y) or x == y:
            continue
        ((wins if (x > y) == (direction == "up") else losses)).append(metric)
    return wins, losses


def terminal_metrics(table: dict[str, dict]) -> list[str]:
    """Return the few metrics of the terminal headline: P(persona), the persona's targets (else the kit's
    default four), then length."""
    declared = [m for m, d in table.items() if d.get("target")]
    return list(dict.fromkeys(["p_persona", *(declared or ("hedge_rate", "boilerplate_rate", "verdict_first")), "length"]))
