"""Check a persona's data before training: schema, declared requirements, near-duplicate prompts,
language labels; and compute the statistics printed by `stylealign personas stats` and the data card.

Near-duplicate prompts: the first user turn of every SFT, preference and eval row is vectorised with
TF-IDF over character n-grams (char_wb, 3-5) and compared by cosine similarity. Pairs of rows from two
different eval suites are not compared (the smoke suite is a sample of the others by design).
The default failure threshold, 0.75, was chosen by reading the closest pairs of the shipped data:
distinct prompts on the same topic ("How do noise-cancelling headphones work?" next to "Are $400
noise-cancelling headphones worth it ...?") score at most about 0.6; the same code snippet under two
different lead-ins ("Is there a bug here?" / "帮我看下这个函数有没有问题") scores about 0.85; a copy with one
or two words changed scores 0.8-0.9 (median; short prompts less). A persona can change it with
`requirements.near_duplicate_max`.

Language labels follow stylealign.text.language_problem ("zh": CJK is most of the text; "en": at
most a quarter, so a quoted Chinese term passes).
"""

from __future__ import annotations

import glob
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from stylealign import data as D
from stylealign.files import write_atomic
from stylealign.personas import Persona
from stylealign.text import language_problem, length_units, table

NEAR_DUPLICATE_MAX = 0.75
TOP_PAIRS = 10
BAD_REJECTED_KINDS = ("wrong", "rude")
SET_KINDS = {"sft": "sft", "preference": "preference", "baseline": "sft", "eval": "eval", "probe": "eval"}
FIRST_TURN = "messages[0].content"
CALM_KINDS = ("open", "known_answer")  # every other eval kind is adversarial
SET_LABELS = {"sft": "SFT", "preference": "preference", "baseline": "baseline", "eval": "eval", "probe": "probe"}


@dataclass
class Loaded:
    """The rows of one data set (sft, preference, baseline, eval) that passed row validation."""

    kind: str
    files: list[str] = field(default_factory=list)
    records: list[D.Record] = field(default_factory=list)

    @property
    def rows(self) -> list[dict]:
        return [r.row for r in self.records]


@dataclass(frozen=True)
class PromptRef:
    """A user turn (the first one, or a later one named by `field`) and where it came from."""

    set: str
    where: str
    id: str | None
    text: str
    field: str = FIRST_TURN  # where a later user turn came from, e.g. "messages[2].content"


@dataclass(frozen=True)
class SimilarPair:
    """Two prompts and their cosine similarity (0..1)."""

    score: float
    a: PromptRef
    b: PromptRef

    def __str__(self) -> str:
        return f"{self.score:.3f}  {_ref(self.a)}  ~  {_ref(self.b)}"


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


def _ref(p: PromptRef) -> str:
    return f"{p.set}:{p.id or '?'} ({p.where})"


# ---------------------------------------------------------------- loading a persona's data


def load_sets(persona: Persona) -> tuple[dict[str, Loaded], list[str]]:
    """Return ({set kind: Loaded}, problems) for every data kind the persona declares; rows with
    problems are left out of the Loaded sets and reported."""
    sets, problems = {}, []
    where = D.show_path(persona.file)
    for kind in ("sft", "preference", "baseline", "eval", "probe"):
        patterns = getattr(persona.data, kind)
        if not patterns:
            continue
        for pattern in patterns:
            if not _matches(persona, pattern):
                problems.append(f"{where}: data.{kind}: {pattern!r} matches no files")
        loaded = Loaded(kind, [D.show_path(f) for f in persona.files(kind)])
        for path in persona.files(kind):
            records, bad = D.read_file(path)
            bad += D.check_records(records, SET_KINDS[kind], schema=True)
            broken = {(p.file, p.line) for p in bad}
            loaded.records += [r for r in records if (r.file, r.line) not in broken]
            problems += [str(p) for p in bad]
        sets[kind] = loaded
    return sets, problems


def _matches(persona: Persona, pattern: str) -> bool:
    return bool(glob.glob(str(persona.path / pattern)))


# ---------------------------------------------------------------- the check


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
    pairs = similar_prompts(_prompts(sets), min_score=threshold + 1e-9, top=TOP_PAIRS, compare=_compared)
    report.closest = pairs[:TOP_PAIRS]
    report.problems += [f"{p.b.where}: {p.b.field}: near-duplicate prompt of {_ref(p.a)}, "
                        f"similarity {p.score:.3f} > {threshold:.2f}" for p in pairs if p.score > threshold]
    return report


def _compared(a: PromptRef, b: PromptRef) -> bool:
    """Return False for two eval rows from different suite files (suites may share prompts on purpose),
    and for a synth pair and the SFT row (or another pair) it was built from."""
    if a.field != FIRST_TURN or b.field != FIRST_TURN:  # later turns: only the held-out check, eval vs the rest
        return (a.set == "eval") != (b.set == "eval")
    same_file = a.where.rsplit(":", 1)[0] == b.where.rsplit(":", 1)[0]
    return not (a.set == b.set == "eval" and not same_file) and not same_source(a, b)


def source_id(row_id: str | None) -> str | None:
    """Return the SFT row a `stylealign synth` pair answers ("pair-<id>-t<k>" -> <id>), else the id itself."""
    m = re.fullmatch(r"pair-(.+)-t\d+", row_id or "")
    return m.group(1) if m else row_id


def same_source(a: PromptRef, b: PromptRef) -> bool:
    """Return True when one of two prompts is a synth pair built from the other's row (or both from one
    row): on-policy pairs repeat their SFT prompts by design, as baseline rows do."""
    pair = str(a.id).startswith("pair-") or str(b.id).startswith("pair-")
    return pair and a.id is not None and source_id(a.id) == source_id(b.id)


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


# ---------------------------------------------------------------- near-duplicates


def _prompts(sets: dict[str, Loaded]) -> list[PromptRef]:
    """Return every user turn of every SFT, preference, eval and probe row (baseline rows repeat SFT
    prompts by design, so they are left out); later turns carry the field they come from."""
    refs = []
    for kind in ("sft", "preference", "eval", "probe"):
        for r in sets.get(kind, Loaded(kind)).records:
            key = "messages" if "messages" in r.row else "prompt"
            users = [(i, t["content"]) for i, t in enumerate(r.row.get(key) or []) if t.get("role") == "user"]
            for n, (i, text) in enumerate(users):
                field_ = FIRST_TURN if n == 0 else f"{key}[{i}].content"
                refs.append(PromptRef(SET_LABELS[kind], f"{r.file}:{r.line}", r.row.get("id"), text, field_))
    return refs


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


def similar_prompts(prompts: Sequence[PromptRef], min_score: float = 0.5, top: int = 0,
                    compare: Callable[[PromptRef, PromptRef], bool] | None = None) -> list[SimilarPair]:
    """Return, most similar first, every pair of prompts with cosine similarity >= min_score, and at
    least the `top` most similar pairs whatever their score; `compare(a, b)` False skips a pair.
    (TF-IDF over char_wb 3-5-grams, sparse: ~2000 prompts take about a second.)"""
    if len(prompts) < 2:
        return []
    import numpy as np
    from scipy.sparse import triu
    from sklearn.feature_extraction.text import TfidfVectorizer

    texts = [" ".join(p.text.lower().split()) for p in prompts]
    matrix = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5)).fit_transform(texts)
    sims = triu(matrix @ matrix.T, k=1).tocoo()  # rows are L2-normalised: the product is cosine
    order = np.lexsort((sims.col, sims.row, -sims.data))  # by score, ties by position: deterministic
    found: list[SimilarPair] = []
    for k in order:  # walk down the scores only as far as needed
        score, a, b = float(sims.data[k]), prompts[sims.row[k]], prompts[sims.col[k]]
        if score < min_score - 1e-9 and len(found) >= top:
            break
        if compare is None or compare(a, b):
            found.append(SimilarPair(round(score, 4), a, b))
    return found


# ---------------------------------------------------------------- language


def row_text(row: dict) -> str:
    """Return all turn contents of a row (messages, or prompt + chosen + rejected) joined by newlines."""
    turns = [t for key in ("messages", "prompt", "chosen", "rejected") for t in row.get(key) or []]
    return "\n".join(t["content"] for t in turns if isinstance(t, dict) and isinstance(t.get("content"), str))


# ---------------------------------------------------------------- statistics


def zh_share(rows: Sequence[dict]) -> float:
    """Return the share of rows labelled "zh" (0.0 for no rows)."""
    return sum(r.get("language") == "zh" for r in rows) / len(rows) if rows else 0.0


def multi_turn_share(rows: Sequence[dict]) -> float:
    """Return the share of rows with two or more user turns (0.0 for no rows)."""
    return sum(user_turn_count(r) >= 2 for r in rows) / len(rows) if rows else 0.0


def user_turn_count(row: dict) -> int:
    """Return how many user turns a row has (messages or prompt)."""
    return sum(t.get("role") == "user" for t in row.get("messages") or row.get("prompt") or [])


def set_stats(rows: Sequence[dict], kind: str) -> dict[str, Any]:
    """Return the statistics of one set of rows: counts, categories, zh share, multi-turn share,
    verdicts / rejected kinds / eval kinds, and per-language length summaries."""
    stats: dict[str, Any] = {
        "rows": len(rows),
        "categories": dict(Counter(r.get("category", "?") for r in rows).most_common()),
        "zh_share": zh_share(rows),
        "multi_turn_share": multi_turn_share(rows),
    }
    if kind in ("sft", "baseline"):
        stats["verdicts"] = _counts(rows, "verdict", D.VERDICTS)
        stats["lengths"] = {"assistant": _lengths(rows, "messages", "assistant")}
    elif kind == "preference":
        stats["rejected_kinds"] = _counts(rows, "rejected_kind", D.REJECTED_KINDS)
        stats["lengths"] = {"chosen": _lengths(rows, "chosen", "assistant"),
                            "rejected": _lengths(rows, "rejected", "assistant")}
    else:
        stats["kinds"] = _counts(rows, "kind", D.EVAL_KINDS)
        stats["adversarial_share"] = sum(r.get("adversarial") is True for r in rows) / len(rows) if rows else 0.0
        stats["lengths"] = {"user": _lengths(rows, "messages", "user")}
    return stats


def _counts(rows: Sequence[dict], key: str, order: Sequence[str]) -> dict[str, int]:
    counts = Counter(r.get(key) for r in rows)
    return {k: counts.get(k, 0) for k in order}


def _lengths(rows: Sequence[dict], key: str, role: str) -> dict[str, dict[str, float]]:
    """Return {language: {n, mean, median, p90}} over every `role` turn in row[key]."""
    by_lang: dict[str, list[int]] = {}
    for row in rows:
        lang = row.get("language", "en")
        for turn in row.get(key) or []:
            if turn.get("role") == role:
                by_lang.setdefault(lang, []).append(length_units(turn["content"], lang))
    return {lang: _summary(values) for lang, values in sorted(by_lang.items())}


def _summary(values: list[int]) -> dict[str, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]
    return {"n": len(values), "mean": statistics.fmean(values), "median": statistics.median(values), "p90": p90}


def persona_stats(persona: Persona) -> dict[str, Any]:
    """Return {"persona", "sets": {kind: {"total": stats, "files": {file: stats}}}, "closest": [...],
    "problems": n} for every data set the persona declares (rows failing validation are left out)."""
    sets, problems = load_sets(persona)
    out: dict[str, Any] = {"persona": persona.name, "sets": {}, "problems": len(problems)}
    for kind, loaded in sets.items():
        per_file = {f: set_stats([r.row for r in loaded.records if r.file == f], kind) for f in loaded.files}
        out["sets"][kind] = {"total": set_stats(loaded.rows, kind), "files": per_file}
    out["closest"] = similar_prompts(_prompts(sets), min_score=1.1, top=TOP_PAIRS, compare=_compared)
    return out


# ---------------------------------------------------------------- rendering statistics


def format_stats(stats: dict[str, Any], markdown: bool = False) -> str:
    """Return the statistics of persona_stats() as tables: Markdown (for the data card) or plain text."""
    parts = [_overview(stats, markdown), _categories(stats, markdown)]
    parts += [p for p in (_balance(stats, markdown), _lengths_table(stats, markdown), _closest(stats, markdown)) if p]
    return "\n\n".join(parts) + "\n"


def _overview(stats, md):
    head = ["set", "file", "rows", "zh share", "multi-turn", "categories", "balance", "median length en/zh"]
    rows = []
    for kind, s in stats["sets"].items():
        for name, st in [("(all)", s["total"]), *s["files"].items()]:
            rows.append([SET_LABELS[kind], name, st["rows"], _pct(st["zh_share"]), _pct(st["multi_turn_share"]),
                         len(st["categories"]), _short_balance(st), _short_lengths(st)])
    return _section("Rows per set and file", head, rows, md)


def _short_balance(st: dict) -> str:
    """Return e.g. "yes 12 / no 10 / depends 3" from a set's verdicts, rejected kinds or eval kinds."""
    counts = st.get("verdicts") or st.get("rejected_kinds") or st.get("kinds") or {}
    return " / ".join(f"{k} {n}" for k, n in counts.items() if n)


def _short_lengths(st: dict) -> str:
    """Return the median length of the set's main turns per language, e.g. "56 w / 93 c"."""
    by_lang = next(iter(st["lengths"].values()), {})
    return " / ".join(f"{v['median']:.0f} {'c' if lang == 'zh' else 'w'}" for lang, v in by_lang.items())


def _categories(stats, md):
    kinds = list(stats["sets"])
    totals = {k: stats["sets"][k]["total"]["categories"] for k in kinds}
    names = [c for c in D.CATEGORIES if any(c in t for t in totals.values())]
    names += sorted({c for t in totals.values() for c in t} - set(names))
    rows = [[c, *(totals[k].get(c, 0) for k in kinds)] for c in names]
    return _section("Categories", ["category", *(SET_LABELS[k] for k in kinds)], rows, md)


def _balance(stats, md):
    rows = []
    for kind, key, order in (("sft", "verdicts", D.VERDICTS), ("baseline", "verdicts", D.VERDICTS),
                             ("preference", "rejected_kinds", D.REJECTED_KINDS), ("eval", "kinds", D.EVAL_KINDS)):
        total = stats["sets"].get(kind, {}).get("total")
        if total and total["rows"]:
            counts = total[key]
            rows += [[f"{SET_LABELS[kind]} {key[:-1].replace('_', ' ')}", k, n, _pct(n / total["rows"])]
                     for k, n in counts.items() if n or k in order[:4]]
    return _section("Verdicts, rejected kinds, eval kinds", ["what", "value", "rows", "share"], rows, md)


def _lengths_table(stats, md):
    rows = []
    for kind, s in stats["sets"].items():
        for part, by_lang in s["total"]["lengths"].items():
            for lang, v in by_lang.items():
                unit = "chars" if lang == "zh" else "words"
                rows.append([SET_LABELS[kind], part, lang, unit, v["n"], f"{v['mean']:.0f}", f"{v['median']:.0f}",
                             v["p90"]])
    head = ["set", "turns", "lang", "unit", "turns counted", "mean", "median", "p90"]
    return _section("Lengths (en: words; zh: Han characters)", head, rows, md)


def _closest(stats, md):
    rows = [[f"{p.score:.3f}", _ref(p.a), _ref(p.b)] for p in stats.get("closest", [])]
    return _section("Closest prompt pairs (char 3-5-gram TF-IDF cosine)", ["score", "prompt", "closest to"], rows, md)


def _section(title: str, head: list[str], rows: list[list], md: bool) -> str:
    """Return a titled table: GitHub Markdown when `md`, else aligned plain text."""
    return table(head, rows, markdown=md, title=title)


def _pct(x: float) -> str:
    return f"{x:.0%}"


CARD_START, CARD_END = "<!-- stats:start -->", "<!-- stats:end -->"


def update_card(card: Path, tables: str, title: str) -> None:
    """Write `tables` between the stats markers of the data card `card` (creating it if missing);
    the hand-written text around the markers is kept."""
    block = f"{CARD_START}\n{tables.rstrip()}\n{CARD_END}"
    text = card.read_text(encoding="utf-8") if card.exists() else f"# {title}: data card\n\n{CARD_START}\n{CARD_END}\n"
    if CARD_START in text and CARD_END in text:
        head, rest = text.split(CARD_START, 1)
        text = head + block + rest.split(CARD_END, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Statistics\n\n" + block + "\n"
    write_atomic(card, text)
