"""The numbers of `stylealign personas stats` and of a persona's data card (README.md between the
stats markers): counts, categories, zh and multi-turn shares, balance, lengths, closest prompt pairs."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stylealign import data as D
from stylealign.files import write_atomic
from stylealign.neardup import TOP_PAIRS, compared, describe, prompts, similar_prompts
from stylealign.persona_data import SET_LABELS, load_sets, multi_turn_share, zh_share
from stylealign.personas import Persona
from stylealign.text import length_units, table

CARD_START, CARD_END = "<!-- stats:start -->", "<!-- stats:end -->"


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
    out["closest"] = similar_prompts(prompts(sets), min_score=1.1, top=TOP_PAIRS, compare=compared)
    return out


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
    rows = [[f"{p.score:.3f}", describe(p.a), describe(p.b)] for p in stats.get("closest", [])]
    return _section("Closest prompt pairs (char 3-5-gram TF-IDF cosine)", ["score", "prompt", "closest to"], rows, md)


def _section(title: str, head: list[str], rows: list[list], md: bool) -> str:
    """Return a titled table: GitHub Markdown when `md`, else aligned plain text."""
    return table(head, rows, markdown=md, title=title)


def _pct(x: float) -> str:
    return f"{x:.0%}"


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
