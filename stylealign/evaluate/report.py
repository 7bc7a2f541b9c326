"""Assemble report.json (schema in SCHEMA.md), render report.md, and the one-screen `headline`."""

from __future__ import annotations

import math
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

from stylealign.evaluate.metrics import metric_table
from stylealign.evaluate.targets import headline_metrics, terminal_metrics
from stylealign.text import table

SCHEMA_VERSION = 1
SECTION_ORDER = ("flags", "probe", "pushback", "comparisons", "classifier", "truth", "retention", "robustness", "judge", "examples")
NOTES = [
    "Embedding-based metrics (relevance, drift, the classifier's embedding features) use all-MiniLM-L6-v2, "
    "an English-centric model: Chinese numbers are reported separately and deserve less trust.",
    "Lexicon markers (hedges, boosters, boilerplate, insults, refusals) are hand-compiled heuristics, used "
    "comparatively (same scorer for baseline and adapter), not absolute measures.",
    "Rates are per 100 English words or per 1,000 Chinese characters, by the language the answer is written in.",
    "P(persona) separates persona answers from hedgy assistant answers; it is not a coherence check (a broken "
    "model's gibberish can score high): read it together with relevance, drift, degenerate and perplexity.",
    "CIs are 95% percentile-bootstrap intervals over prompts of the paired difference (adapter - baseline).",
]


def build_report(state, config, gen_config, sections: dict, base_model: str | None, judge_spec: str | None) -> dict:
    """Return the report dict (schema_version 1; see SCHEMA.md)."""
    from stylealign import __version__

    rows = state.rows
    count = lambda key: {k: sum(1 for r in rows if str(r.get(key)) == k) for k in sorted({str(r.get(key)) for r in rows})}
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "stylealign", "version": __version__},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "base_model": base_model,
        "config": {**config.to_dict(), "generation": gen_config.to_dict(), "judge": judge_spec},
        "prompts": {"n": len(rows), "by_language": count("language"), "by_suite": count("suite"),
                    "by_kind": count("kind")},
        "baseline": {"label": "baseline", "adapter": None},
        "variants": [asdict(v) for v in state.variants],
        "metrics": state.metrics,
        **{k: sections[k] for k in SECTION_ORDER if k in sections},
        "notes": NOTES,
        "files": {},
    }


def write_outputs(report: dict, state, out: Path, plots: bool = True) -> dict:
    """Write answers.jsonl, plots, report.json and report.md into `out` (each atomically); return report["files"]."""
    from stylealign.files import write_atomic, write_json, write_jsonl

    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "answers.jsonl", [
        {"key": r["key"], "suite": r.get("suite"), "id": r.get("id"), "language": r.get("language"),
         "category": r.get("category"), "kind": r.get("kind"), "expected": r.get("expected"),
         "messages": r["messages"], "answers": {lab: state.answers[lab][i] for lab in state.answers},
         "probe_answers": {lab: state.probe_answers[lab][i] for lab in state.probe_answers},
         "features": {lab: state.features[lab][i] for lab in state.features}} for i, r in enumerate(state.rows)])
    files = {"answers": "answers.jsonl", "report_md": "report.md", "plots": []}
    if plots:
        from stylealign.evaluate import plots as p

        langs = [r.get("language", "en") for r in state.rows]
        made = [p.marker_distributions(state.features, langs, out / "markers.png"), p.strength_sweep(report, out / "strength_sweep.png")]
        files["plots"] = [m.name for m in made if m is not None]
    report["files"] = files
    write_atomic(out / "report.md", render_markdown(report))
    write_json(out / "report.json", report)
    return files


# ------------------------------------------------------------------ formatting


def fmt(value, metric: str | None = None, signed: bool = False) -> str:
    """Return a compact human string: shares as %, others with 2-3 significant decimals; "–" for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    unit = metric_table().get(metric or "", {}).get("unit")
    if unit == "share":
        return f"{value * 100:+.0f} pts" if signed else f"{value * 100:.0f}%"
    text = f"{value:+.2f}" if signed else f"{value:.2f}"
    return text if abs(value) < 1000 else f"{value:+.0f}" if signed else f"{value:.0f}"


def _unpaired(stat: dict | None, metric: str) -> str | None:
    """Return the cell of a missing block ("–") or of an adapter-only metric ("value [lo, hi]"); None for a paired one."""
    if not stat:
        return "–"
    if stat.get("baseline") is None:
        lo, hi = stat["ci"]
        return f"{fmt(stat['adapter'], metric)} [{fmt(lo, metric)}, {fmt(hi, metric)}]"
    return None


def cell(stat: dict | None, metric: str, table: dict | None = None) -> str:
    """Return "base → adapter (Δ [lo, hi])" for a paired-stat block, or the adapter-only form."""
    if (plain := _unpaired(stat, metric)) is not None:
        return plain
    lo, hi = stat["ci"]
    return (f"{fmt(stat['baseline'], metric)} → {fmt(stat['adapter'], metric)} "
            f"({fmt(stat['diff'], metric, True)} [{fmt(lo, metric, True)}, {fmt(hi, metric, True)}]){_mark(stat, metric, table)}")


def _mark(stat: dict, metric: str, table: dict | None = None) -> str:
    """Return " ✓" / " ✗" when the CI excludes 0 in the persona's wanted / unwanted direction (`table`: the
    report's metric table, which carries the persona's targets)."""
    lo, hi = stat["ci"]
    better = (table or metric_table()).get(metric, {}).get("better")
    if lo is None or better not in ("higher", "lower") or (lo <= 0 <= hi):
        return ""
    up = lo > 0
    return " ✓" if (up and better == "higher") or (not up and better == "lower") else " ✗"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Return markdown table lines."""
    return table(header, rows).splitlines()


# ------------------------------------------------------------------ report.md


def render_markdown(report: dict) -> str:
    """Return report.md: headline tables with CIs per language, truth, retention, judge, flags, examples."""
    lines = [f"# stylealign eval — {', '.join(v['label'] for v in report['variants'])} vs baseline", "",
             _meta_line(report), ""]
    lines += _gate_md(report) + _flags_md(report) + _probe_md(report) + _pushback_md(report)
    for v in report["variants"]:
        lines += _headline_md(report, v["label"])
    lines += _truth_md(report) + _retention_md(report) + _judge_md(report) + _classifier_md(report)
    lines += _category_md(report) + _examples_md(report)
    lines += [f"![{p}]({p})" for p in report.get("files", {}).get("plots", [])] + [""]
    lines += ["## Notes", ""] + [f"- {n}" for n in report["notes"]] + [""]
    return "\n".join(lines)


def _meta_line(report: dict) -> str:
    p, g = report["prompts"], report["config"]["generation"]
    langs = ", ".join(f"{k} {v}" for k, v in p["by_language"].items())
    return (f"{p['n']} prompts ({langs}); suites: {', '.join(p['by_suite'])}; base model: {report.get('base_model')}; "
            f"generation: {', '.join(f'{k}={v}' for k, v in g.items())}; created {report['created']}.")


def _gate_md(report: dict) -> list[str]:
    gate = report.get("gate")
    if not gate:
        return []
    rows = [[c["rule"], f"`{c['spec']}`", c["variant"], fmt(c["value"]), "pass" if c["passed"] else "**FAIL**"]
            for c in gate["checks"]]
    return [f"## CI gate: {'passed' if gate['passed'] else 'FAILED'}", "",
            *_table(["rule", "spec", "variant", "value", "result"], rows), ""]


def _flags_md(report: dict) -> list[str]:
    flags = report.get("flags") or []
    if not flags:
        return ["**No red flags.**", ""]
    return ["## Red flags", ""] + [f"- **{f['severity']}** `{f['code']}` ({f['variant'] or 'all'}): {f['message']}"
                                   for f in flags] + [""]


PROBE_ROWS = (("repetitive", "repetitive answers"), ("top_opener", "most common opener's share (max over languages)"),
              ("stopped", "stopped before the budget"), ("lang_mismatch", "wrong language"),
              ("verdict_first", "verdict-first"), ("hedge_fill", "hedges + fillers (rate)"))


def _probe_md(report: dict) -> list[str]:
    """Return the coherence probe's table (greedy answers, per model) and its verdict balance."""
    pr = report.get("probe") or {}
    if pr.get("status") != "ok":
        return []
    labels = list(pr["models"])
    comps = {v["label"]: report["comparisons"][v["label"]]["overall"] for v in report["variants"]}
    table = report.get("metrics") or {}
    rows = [[name, *[_fmt_probe(pr["models"][lab].get(key), key) for lab in labels],
             *[_delta(comps[lab].get(f"probe_{key}"), f"probe_{key}", table) for lab in comps]]
            for key, name in PROBE_ROWS]
    own = [m for m in table if m.startswith("probe_") and m.removeprefix("probe_") in table and
           table[m]["layer"] == "L1-coherence" and m.removeprefix("probe_") not in dict(PROBE_ROWS)]
    rows += [[table[m]["description"], *["" for _ in labels], *[_delta(comps[lab].get(m), m, table) for lab in comps]]
             for m in own]
    openers = [["opener (per language)", *[", ".join(f"{lg} {o['opener']!r} {fmt(o['share'])}" for lg, o in
                                           pr["models"][lab]["openers"].items()) for lab in labels], *["" for _ in comps]]]
    verdicts = [[f"yes-share, {name.replace('_', ' ')}", *[_verdict_cell(pr["models"][lab]["verdicts"][name]) for lab in labels],
                 *["" for _ in comps]] for name in ("known_answer", "open_yes_no")]
    g = pr["generation"]
    return [f"## Coherence probe (greedy, no repetition penalty, {g['max_new_tokens']} new tokens)", "",
            *_table(["", *labels, *[f"Δ {lab} [95% CI]" for lab in comps]], rows + openers + verdicts), "",
            "What a user sees at temperature 0 (llama.cpp, Ollama, vLLM defaults), on the same prompts for every model. "
            "Repetitive: a sentence said twice, a 4-gram said 3 times, 30%+ repeated 3-grams, or cut off while repeating.", ""]


def _pushback_md(report: dict) -> list[str]:
    """Return the pushback table: per model the cave / correct / stubborn rates, per adapter the CI of its change."""
    from stylealign.evaluate.pushback import PUSHBACK_METRICS

    pb = report.get("pushback") or {}
    if pb.get("status") != "ok":
        return []
    labels, comps = list(pb["models"]), pb["comparisons"]
    pct = lambda x: "–" if x is None else f"{x:.0%}"  # noqa: E731
    rows = []
    for metric, (desc, _) in PUSHBACK_METRICS.items():
        cells = []
        for lab in comps:
            st = comps[lab][metric]
            lo, hi = st["ci"]
            cells.append("–" if st["diff"] is None else
                         f"{st['diff']:+.0%} [{pct(lo)}, {pct(hi)}] (n {st['n_baseline']}/{st['n_adapter']})")
        rows.append([desc, *[pct(pb["models"][lab][metric]) for lab in labels], *cells])
    return [f"## Candor under pushback ({pb['n']} known-answer prompts, greedy)", "",
            *_table(["", *labels, *[f"Δ {lab} [95% CI]" for lab in comps]], rows), "",
            f"Each model's greedy answer, then the user: \"{pb['prompts']['en']}\" and the question again (caving), or a "
            "source that gives the right answer and the question again, where the first verdict was wrong "
            "(stubbornness).", ""]


def _fmt_probe(value, key: str) -> str:
    return fmt(value, "probe_hedge_fill" if key == "hedge_fill" else "probe_repetitive")


def _verdict_cell(block: dict) -> str:
    known = f"; right/wrong/none {block['right']}/{block['wrong']}/{block['no_verdict']}" if "right" in block else ""
    return f"{fmt(block['yes_share'])} of {block['verdicts']} verdicts ({block['n']} prompts{known})"


def _headline_md(report: dict, label: str) -> list[str]:
    comp = report["comparisons"][label]
    langs = list(comp.get("by_language", {}))
    rows, table = [], report["metrics"]
    for m in headline_metrics(table):
        st = comp["overall"].get(m)
        if not st:
            continue
        per_lang = [_delta((comp["by_language"][lg].get(m)), m, table) for lg in langs]
        rows.append([m, fmt(st["baseline"], m), fmt(st["adapter"], m), _delta(st, m, table), *per_lang])
    header = ["metric", "baseline", "adapter", "Δ [95% CI]", *[f"Δ {lg}" for lg in langs]]
    return [f"## {label} vs baseline", "", *_table(header, rows), "",
            "Δ = adapter − baseline, paired over prompts. ✓ / ✗: the CI excludes 0 in the direction the persona "
            "wants / does not want. drift is adapter-only (its value, not a Δ).", ""]


def _delta(stat: dict | None, metric: str, table: dict | None = None) -> str:
    """Return "Δ [lo, hi] ✓" for a paired-stat block (the adapter value and CI for adapter-only metrics)."""
    if (plain := _unpaired(stat, metric)) is not None:
        return plain
    lo, hi = stat["ci"]
    return f"{fmt(stat['diff'], metric, True)} [{fmt(lo, metric, True)}, {fmt(hi, metric, True)}]{_mark(stat, metric, table)}"


def _truth_md(report: dict) -> list[str]:
    t = report.get("truth") or {}
    if t.get("status") != "ok":
        return []
    rows = [[lab, str(b["n"]), fmt(b["right_share"], "truth_right"), str(b["wrong"]), str(b["missing"]),
             fmt(b["balanced_accuracy"]), fmt(b["verdict_accuracy"]), fmt(b["yes_share_of_verdicts"]), ", ".join(b["flags"]) or "–",
             " / ".join(f"{lg} {fmt(x['balanced_accuracy'])}" for lg, x in b["by_language"].items())]
            for lab, b in t["models"].items()]
    return ["## Truth under style (known yes/no answers)", "",
            *_table(["model", "n", "right", "wrong", "missing", "balanced acc", "acc of verdicts", "yes share", "flags", "balanced acc by language"], rows),
            "", "A model answering the same verdict to everything scores 0.50 balanced accuracy and is flagged one_sided.", ""]


def _retention_md(report: dict) -> list[str]:
    r = report.get("retention") or {}
    if r.get("status") != "ok":
        return ["## Retention", "", f"Skipped: {r.get('reason', 'not run')}.", ""]
    rows = []
    for lab, b in r["variants"].items():
        rows.append([lab, "all", fmt(b["ppl_base"]), fmt(b["ppl_adapter"]), fmt(b["ppl_ratio"]), fmt(b["kl_per_token"])])
        rows += [[lab, lg, fmt(x["ppl_base"]), fmt(x["ppl_adapter"]), fmt(x["ppl_ratio"]), fmt(x["kl_per_token"])]
                 for lg, x in b["by_language"].items()]
    return ["## Retention", "", *_table(["variant", "language", "ppl base", "ppl adapter", "ratio", "KL/token (nats)"], rows),
            "", f"Perplexity on {r['corpus_texts']} neutral-corpus texts; KL(adapter‖base) per token on {r['kl_prompts']} "
            "suite prompts, teacher-forced on the baseline answer.", ""]


def _judge_md(report: dict) -> list[str]:
    j = report.get("judge") or {}
    if j.get("status") != "ok":
        return []
    rows = [[lab, str(b["n"]), f"{b['wins']}/{b['ties']}/{b['losses']}", fmt(b["win_rate"]),
             f"[{fmt(b['ci'][0])}, {fmt(b['ci'][1])}]", fmt(b["position_consistency"])] for lab, b in j["variants"].items()]
    return [f"## Judge ({j['spec']})", "", *_table(["variant", "pairs", "W/T/L", "win rate", "95% CI", "position consistency"], rows),
            "", "Each pair judged in both orders; disagreeing verdicts count as ties (ties count half).", ""]


def _classifier_md(report: dict) -> list[str]:
    c = report.get("classifier") or {}
    if c.get("status") != "ok":
        return ["## Style classifier", "", f"Skipped: {c.get('reason', 'not run')}.", ""]
    by = ", ".join(f"{k} {fmt(v)} ({c['n_pairs'].get(k, 0)} pairs)" for k, v in c["auroc_by_language"].items())
    return ["## Style classifier", "", f"Held-out AUROC {fmt(c['auroc'])} ({by}); {c['method']}; trained on "
            f"chosen vs rejected ({c['kind']}) pairs. P(persona) above is this model's probability.", ""]


def _category_md(report: dict) -> list[str]:
    out = []
    for lab, comp in report["comparisons"].items():
        metrics = [m for m in ("p_persona", "hedge_rate", "verdict_first", "boilerplate_rate") if m in comp["overall"]]
        rows = [[cat, str(max((s.get(m) or {}).get("n", 0) for m in metrics))] +
                [fmt((s.get(m) or {}).get("diff"), m, True) for m in metrics]
                for cat, s in comp.get("by_category", {}).items()]
        out += [f"## {lab}: Δ by category", "", *_table(["category", "n", *metrics], rows), ""]
    return out


def _examples_md(report: dict) -> list[str]:
    out = []
    for lab, exs in (report.get("examples") or {}).items():
        out += [f"## {lab}: answers that changed most", ""]
        for e in exs:
            pp = " → ".join(fmt(x) for x in e.get("p_persona", []))
            out += [f"**{e['key']}** ({e['language']}, {e['category']}; P(persona) {pp})", "",
                    f"> {_clip(e['prompt'])}", "", f"- baseline: {_clip(e['baseline'])}", f"- adapter: {_clip(e['adapter'])}", ""]
    return out


def _clip(text: str, n: int = 420) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


# ------------------------------------------------------------------ headline


def headline(report: dict) -> str:
    """Return a few lines summarising the report for a terminal: per variant the key deltas with CIs, then flags."""
    p = report["prompts"]
    lines = [f"eval: {p['n']} prompts ({', '.join(f'{k} {v}' for k, v in p['by_language'].items())}), "
             f"{len(report['variants'])} variant(s) vs baseline; style classifier AUROC "
             f"{fmt((report.get('classifier') or {}).get('auroc'))}"]
    for v in report["variants"]:
        lab, comp = v["label"], report["comparisons"][v["label"]]
        lines.append(f"{lab} (strength {v['strength']:g}):")
        for m in terminal_metrics(report["metrics"]):
            if m in comp["overall"]:
                per_lang = "; ".join(f"{lg} {fmt((s.get(m) or {}).get('diff'), m, True)}" for lg, s in comp["by_language"].items())
                lines.append(f"  {m:<17} {cell(comp['overall'][m], m, report['metrics'])}   [{per_lang}]")
        lines += _headline_extras(report, lab) + _headline_probe(report, lab)
    if report.get("gate"):
        lines.append(f"gate: {'passed' if report['gate']['passed'] else 'FAILED'}")
    flags = report.get("flags") or []
    lines.append("flags: " + ("; ".join(f"{f['code']}({f['variant'] or 'all'})" for f in flags) if flags else "none"))
    return "\n".join(lines)


def _headline_probe(report: dict, label: str) -> list[str]:
    """Return the greedy probe's lines for one variant: repetition, collapse, stops, verdict balance."""
    pr = report.get("probe") or {}
    if pr.get("status") != "ok":
        return []
    comp, b, a = report["comparisons"][label]["overall"], pr["models"]["baseline"], pr["models"][label]
    top = lambda m: "; ".join(f"{lg} {o['opener']!r} {fmt(o['share'])}" for lg, o in m["openers"].items())  # noqa: E731
    kb, ka = b["verdicts"]["known_answer"], a["verdicts"]["known_answer"]
    ob, oa = b["verdicts"]["open_yes_no"], a["verdicts"]["open_yes_no"]
    belief = a.get("belief_consistency") or {}
    lines = [f"  greedy probe ({pr['generation']['max_new_tokens']} tokens, no repetition penalty):",
             f"    repetitive        {cell(comp.get('probe_repetitive'), 'probe_repetitive', report.get('metrics'))}",
             f"    top opener        {cell(comp.get('probe_top_opener'), 'probe_top_opener', report.get('metrics'))}   [{top(b)} → {top(a)}]",
             f"    stopped in budget {cell(comp.get('probe_stopped'), 'probe_stopped', report.get('metrics'))}",
             f"    wrong language    {cell(comp.get('probe_lang_mismatch'), 'probe_lang_mismatch', report.get('metrics'))}",
             f"    verdict-first     {cell(comp.get('probe_verdict_first'), 'probe_verdict_first', report.get('metrics'))}"]
    if ka["n"]:
        lines.append(f"    known answers     yes-share {fmt(kb['yes_share'])} → {fmt(ka['yes_share'])}, right/wrong/none "
                     f"{kb['right']}/{kb['wrong']}/{kb['no_verdict']} → {ka['right']}/{ka['wrong']}/{ka['no_verdict']}")
    if oa["n"]:
        lines.append(f"    open yes/no       yes-share {fmt(ob['yes_share'])} → {fmt(oa['yes_share'])} "
                     f"({ob['verdicts']} → {oa['verdicts']} verdicts of {oa['n']})")
    if belief.get("n"):
        lines.append(f"    belief            {belief['agree']} of {belief['n']} verdicts agree with the base model's "
                     "own stance on the same prompt")
    return lines


def _headline_extras(report: dict, label: str) -> list[str]:
    out = []
    truth = ((report.get("truth") or {}).get("models") or {})
    if label in truth:
        b, a = truth["baseline"], truth[label]
        out.append(f"  truth: balanced acc {fmt(b['balanced_accuracy'])} → {fmt(a['balanced_accuracy'])}, "
                   f"right/wrong/missing {a['right']}/{a['wrong']}/{a['missing']}")
    ret = ((report.get("retention") or {}).get("variants") or {}).get(label)
    if ret:
        out.append(f"  retention: ppl x{fmt(ret['ppl_ratio'])}, KL {fmt(ret['kl_per_token'])} nats/token")
    j = ((report.get("judge") or {}).get("variants") or {}).get(label)
    if j:
        out.append(f"  judge win rate {fmt(j['win_rate'])} [{fmt(j['ci'][0])}, {fmt(j['ci'][1])}], consistency {fmt(j['position_consistency'])}")
    return out
