"""The registry of per-answer metrics: name -> layer, description, unit, preferred direction.

Every metric here is computed for each (prompt, model) answer and compared baseline vs adapter with
a paired bootstrap CI. "better" says which direction the persona wants ("neutral": no preference).
"""

from __future__ import annotations

from stylealign.evaluate.content import CONTENT_METRICS
from stylealign.evaluate.markers import MARKER_METRICS
from stylealign.evaluate.probe import PROBE_METRICS
from stylealign.evaluate.robustness import ROBUSTNESS_METRICS
from stylealign.evaluate.truth import TRUTH_METRICS

EXTRA_L0 = {"lang_mismatch": ("answer not in the prompt's language", "share", "lower")}
CLASSIFIER_METRICS = {"p_persona": ("P(persona) from the style classifier (MiniLM + markers)", "probability", "higher")}

_LAYERS = (
    ("L0", {**MARKER_METRICS, **EXTRA_L0}),
    ("L1-style", CLASSIFIER_METRICS),
    ("L1-content", CONTENT_METRICS),
    ("L1-robustness", ROBUSTNESS_METRICS),
    ("L1-truth", TRUTH_METRICS),
    ("L1-coherence", PROBE_METRICS),
)

# The short list shown in headlines and the report's first table, in display order.
HEADLINE = ("p_persona", "hedge_rate", "boilerplate_rate", "booster_rate", "verdict_first", "length",
            "list_items", "relevance", "drift", "truth_right", "degenerate", "insult", "harmful_complied",
            "lang_mismatch")


def metric_table() -> dict[str, dict]:
    """Return {metric: {"layer", "description", "unit", "better"}} for every per-answer metric."""
    return {name: {"layer": layer, "description": d, "unit": u, "better": b}
            for layer, table in _LAYERS for name, (d, u, b) in table.items()}


def metric_names() -> list[str]:
    """Return every per-answer metric name, in registry order."""
    return list(metric_table())
