"""CI gates: `--fail-under METRIC=VALUE` / `--fail-over METRIC=VALUE` checked against a report.

METRIC names (checked for every variant; the gate fails if any variant fails or the value is missing):
  <metric>[.<field>][@<language>]   a per-answer metric; field is adapter (default), baseline, diff,
                                    ci_low or ci_high; @en / @zh picks the per-language numbers
  classifier.auroc                  held-out AUROC of the style classifier (same for all variants)
  truth.balanced_accuracy | truth.verdict_accuracy | truth.right_share
  retention.ppl_ratio | retention.kl_per_token
  judge.win_rate | judge.ci_low | judge.position_consistency
  probe.red_flags | probe.yes_share | probe.top_opener | probe.repetitive   the greedy coherence probe
  pushback.cave_rate | pushback.stubborn_rate | pushback.correct_rate   candor under pushback (known answers)
Examples: --fail-under p_persona.diff=0.2  --fail-under truth.balanced_accuracy=0.6
          --fail-over hedge_rate.diff@zh=0  --fail-over retention.ppl_ratio=1.2  --fail-over pushback.cave_rate=0.2
"""

from __future__ import annotations

import re

from stylealign.errors import ConfigError

_SPEC = re.compile(r"^\s*([\w.]+?)(?:@(\w+))?\s*=\s*(-?[\d.]+(?:e-?\d+)?)\s*$")
FIELDS = {"adapter": "adapter", "baseline": "baseline", "diff": "diff"}


class GateError(ConfigError):
    """A gate spec could not be parsed."""


def parse_spec(spec: str) -> tuple[str, str | None, float]:
    """Return (name, language or None, threshold) from "NAME[@LANG]=VALUE"."""
    m = _SPEC.match(spec)
    if not m:
        raise GateError(f"bad gate {spec!r}: expected METRIC[.FIELD][@LANG]=NUMBER, e.g. p_persona.diff=0.2")
    _validate(m.group(1))
    return m.group(1), m.group(2), float(m.group(3))


SECTION_FIELDS = {
    "classifier": ("auroc",),
    "truth": ("balanced_accuracy", "verdict_accuracy", "right_share", "recall_yes", "recall_no"),
    "retention": ("ppl_ratio", "kl_per_token", "ppl_adapter", "ppl_base"),
    "judge": ("win_rate", "ci_low", "position_consistency"),
    "probe": ("yes_share", "top_opener", "repetitive", "red_flags"),
    "pushback": ("cave_rate", "stubborn_rate", "correct_rate"),
}


def _validate(name: str) -> None:
    """Raise GateError unless `name` is a known metric (with a known field) or section value."""
    from stylealign.evaluate.metrics import metric_names

    head, _, field = name.partition(".")
    if head in SECTION_FIELDS and field in SECTION_FIELDS[head]:
        return
    if head in metric_names() and field in ("", *FIELDS, "ci_low", "ci_high"):
        return
    sections = ", ".join(f"{h}.{f}" for h, fs in SECTION_FIELDS.items() for f in fs)
    raise GateError(f"unknown gate metric {name!r}. Per-answer metrics: {', '.join(metric_names())} "
                    f"(optionally .adapter/.baseline/.diff/.ci_low/.ci_high); sections: {sections}")


def _metric_value(stat: dict | None, field: str):
    """Return one field of a paired-stat block (ci_low / ci_high from its CI)."""
    if not stat:
        return None
    if field in ("ci_low", "ci_high"):
        return stat["ci"][0 if field == "ci_low" else 1]
    return stat.get(FIELDS.get(field, "__missing__"))


def lookup(report: dict, label: str, name: str, language: str | None = None):
    """Return the value of gate `name` for variant `label` (None when unavailable)."""
    head, _, field = name.partition(".")
    lang_pick = lambda block: (block.get("by_language") or {}).get(language, {}) if language else block
    if head == "classifier":
        c = report.get("classifier") or {}
        return (c.get("auroc_by_language") or {}).get(language) if language else c.get(field)
    if head == "truth":
        return lang_pick(((report.get("truth") or {}).get("models") or {}).get(label) or {}).get(field)
    if head == "retention":
        return lang_pick(((report.get("retention") or {}).get("variants") or {}).get(label) or {}).get(field)
    if head == "probe":
        return _probe_value(report, label, field, language)
    if head == "pushback":
        return (((report.get("pushback") or {}).get("models") or {}).get(label) or {}).get(field)
    if head == "judge":
        j = lang_pick(((report.get("judge") or {}).get("variants") or {}).get(label) or {})
        return (j.get("ci") or [None])[0] if field == "ci_low" else j.get(field)
    comp = report["comparisons"][label]
    block = comp["by_language"].get(language, {}) if language else comp["overall"]
    return _metric_value(block.get(head), field or "adapter")


def _probe_value(report: dict, label: str, field: str, language: str | None):
    """Return a probe value of a variant: its red-flag count, yes-share of all greedy verdicts, top opener
    share (per language with @lang), or repetitive share."""
    if field == "red_flags":
        return float(sum(f.get("source") == "probe" and f["variant"] == label for f in report.get("flags") or []))
    model = (((report.get("probe") or {}).get("models") or {}).get(label)) or {}
    if field == "top_opener" and language:
        return ((model.get("openers") or {}).get(language) or {}).get("share")
    if language:
        return lookup(report, label, f"probe_{'yes' if field == 'yes_share' else field}", language)
    return model.get(field)


def check_gates(report: dict, fail_under: list[str] = (), fail_over: list[str] = ()) -> dict:
    """Return {"passed": bool, "checks": [...]}: every spec against every variant of the report."""
    checks = []
    for op, specs in (("under", fail_under), ("over", fail_over)):
        for spec in specs:
            name, lang, threshold = parse_spec(spec)
            for v in report["variants"]:
                value = lookup(report, v["label"], name, lang)
                ok = value is not None and (value >= threshold if op == "under" else value <= threshold)
                checks.append({"spec": spec, "rule": f"fail-{op}", "variant": v["label"], "value": value,
                               "threshold": threshold, "passed": ok})
    return {"passed": all(c["passed"] for c in checks), "checks": checks}


def describe_failures(gate: dict) -> str:
    """Return one line per failed check, for the terminal."""
    return "\n".join(f"GATE FAILED {c['rule']} {c['spec']} [{c['variant']}]: value "
                     f"{'missing' if c['value'] is None else format(c['value'], '.4g')}"
                     for c in gate["checks"] if not c["passed"])
