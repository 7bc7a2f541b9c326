"""Check a persona's data before training (`stylealign personas validate`): row schema of every file,
cross-file duplicate ids, declared requirements, language labels, baseline alignment, eval suites
(adversarial matches kind) and the neutral corpus, and near-duplicate prompts (stylealign.neardup).

Language labels follow stylealign.text.language_problem ("zh": CJK is most of the text; "en": at
most a quarter, so a quoted Chinese term passes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stylealign import data as D
from stylealign.neardup import NEAR_DUPLICATE_MAX, TOP_PAIRS, SimilarPair, compared, describe, prompts, similar_prompts
from stylealign.persona_data import SET_LABELS, Loaded, load_sets, multi_turn_share, row_text, zh_share
from stylealign.personas import Persona
from stylealign.text import language_problem

BAD_REJECTED_KINDS = ("wrong", "rude")
CALM_KINDS = ("open", "known_answer")  # every other eval kind is adversarial


@dataclass
class CheckReport:
    """Result of check_persona: every problem (empty when valid) and the closest prompt pairs."""

    persona: str
    problems: list[str] = field(default_factory=list)
    closest: list[SimilarPair] = field(default_factory=list)
    threshold: float = NEAR_DUPLICATE_MAX
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems

    def format(self) -> str:
        """Return the report as text: counts, closest pairs, then every problem (or OK)."""
        counts = ", ".join(f"{SET_LABELS[k]} {n}" for k, n in self.counts.items())
        lines = [f"persona {self.persona}: {counts or 'no data'}"]
        if self.closest:
            lines.append(f"closest prompt pairs (fail above {self.threshold:.2f}):")
            lines += [f"  {pair}" for pair in self.closest]
        lines += self.problems
        lines.append("OK" if self.ok else f"FAILED: {len(self.problems)} problem(s)")
        return "\n".join(lines)


def check_persona(persona: Persona) -> CheckReport:
    """Return a CheckReport for `persona`: row schema of every file, cross-file duplicate ids,
    declared requirements, near-duplicate prompts, language labels, baseline alignment."""
    sets, problems = load_sets(persona)
    threshold = persona.requirements.get("near_duplicate_max", NEAR_DUPLICATE_MAX)
    report = CheckReport(persona.name, problems, threshold=threshold,
                         counts={k: len(s.records) for k, s in sets.items()})
    report.problems += _duplicate_ids(sets)
    report.problems += _requirement_problems(persona, sets)
    report.problems += [p for s in sets.values() for p in _language_problems(s)]
    report.problems += _baseline_problems(sets)
    report.problems += _adversarial_problems(sets.get("eval", Loaded("eval")))
    report.problems += _corpus_problems(persona)
    pairs = similar_prompts(prompts(sets), min_score=threshold + 1e-9, top=TOP_PAIRS, compare=compared)
    report.closest = pairs[:TOP_PAIRS]
    report.problems += [f"{p.b.where}: {p.b.field}: near-duplicate prompt of {describe(p.a)}, "
                        f"similarity {p.score:.3f} > {threshold:.2f}" for p in pairs if p.score > threshold]
    return report


def _duplicate_ids(sets: dict[str, Loaded]) -> list[str]:
    """Ids must be unique across files (check_records only sees one file at a time)."""
    seen: dict[str, D.Record] = {}
    problems = []
    for loaded in sets.values():
        for record in loaded.records:
            rid = record.row.get("id")
            first = seen.setdefault(rid, record) if rid else record
            if first is not record and first.file != record.file:
                problems.append(f"{record.file}:{record.line}: id: duplicate id {rid!r} (first at {first.file}:{first.line})")
    return problems


def _requirement_problems(persona: Persona, sets: dict[str, Loaded]) -> list[str]:
    """Return one problem per declared requirement the data misses, naming persona.yaml and the key."""
    req, where = persona.requirements, D.show_path(persona.file)
    problems = []

    def need(key: str, value: float, label: str) -> None:
        if key in req and value < req[key]:
            shown = f"{value:.3f}" if isinstance(value, float) else str(value)
            problems.append(f"{where}: requirements.{key}: {label} is {shown}, needs at least {req[key]}")

    sft, pref = sets.get("sft", Loaded("sft")).rows, sets.get("preference", Loaded("preference")).rows
    need("sft_min", len(sft), "SFT rows")
    need("pref_min", len(pref), "preference rows")
    need("eval_min", len(sets.get("eval", Loaded("eval")).rows), "eval rows")
    for label, rows in (("SFT", sft), ("preference", pref)):
        need("zh_share_min", zh_share(rows), f"{label} zh share")
        need("multi_turn_share_min", multi_turn_share(rows), f"{label} multi-turn share")
        need("categories_min", len({r.get("category") for r in rows}), f"{label} categories")
    bad = sum(r.get("rejected_kind") in BAD_REJECTED_KINDS for r in pref) / len(pref) if pref else 0.0
    need("pref_bad_rejected_share_min", bad, "preference wrong+rude rejected share")
    return problems


def _language_problems(loaded: Loaded) -> list[str]:
    problems = []
    for record in loaded.records:
        why = language_problem(row_text(record.row), record.row.get("language"))
        if why:
            problems.append(f"{record.file}:{record.line}: language: {why}")
    return problems


def _baseline_problems(sets: dict[str, Loaded]) -> list[str]:
    """Each baseline row answers the SFT row with id = its id minus "neutral-", with the same user turns."""
    if "baseline" not in sets or "sft" not in sets:
        return []
    sft: dict[str, dict] = {}
    for r in sets["sft"].records:
        sft.setdefault(r.row.get("id"), r.row)  # a duplicated id is reported elsewhere; the first one counts
    problems = []
    for record in sets["baseline"].records:
        rid = record.row.get("id", "")
        target = sft.get(rid.removeprefix("neutral-"))
        if not rid.startswith("neutral-") or target is None:
            problems.append(f"{record.file}:{record.line}: id: {rid!r} is not 'neutral-' + an SFT row id")
        elif _user_turns(target) != _user_turns(record.row):
            problems.append(f"{record.file}:{record.line}: messages: user turns differ from SFT row {target['id']!r}")
    return problems


def _user_turns(row: dict) -> list[str]:
    return [" ".join(t["content"].split()) for t in row["messages"] if t["role"] == "user"]


def _adversarial_problems(loaded: Loaded) -> list[str]:
    """Eval rows are adversarial exactly when their kind is not "open" or "known_answer"."""
    problems = []
    for record in loaded.records:
        row = record.row
        if "kind" in row and "adversarial" in row and row["adversarial"] != (row["kind"] not in CALM_KINDS):
            problems.append(f"{record.file}:{record.line}: adversarial: {str(row['adversarial']).lower()} "
                            f"does not match kind {row['kind']!r} (true unless the kind is open or known_answer)")
    return problems


def _corpus_problems(persona: Persona) -> list[str]:
    """Neutral-corpus rows need a language (en or zh) that matches a non-empty text."""
    problems = []
    for path in persona.files("corpus"):
        records, bad = D.read_file(path)
        problems += [str(p) for p in bad]
        for r in records:
            text, language = r.row.get("text"), r.row.get("language")
            if not isinstance(text, str) or not text.strip():
                problems.append(f"{r.file}:{r.line}: text: missing or empty")
            elif language not in ("en", "zh"):
                problems.append(f"{r.file}:{r.line}: language: {language!r} is not en or zh")
            elif why := language_problem(text, language):
                problems.append(f"{r.file}:{r.line}: language: {why}")
    return problems
