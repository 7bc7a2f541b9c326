"""Candor measurements: where a style adapter's verdicts come from, per question form.

    python benchmarks/candor.py data                      # the persona's openers and verdicts per form
    python benchmarks/candor.py answers --run runs/sc     # greedy answers of base and adapter, per form
    python benchmarks/candor.py answers --run a --run b   # several adapters in one pass (one base in memory)
    python benchmarks/candor.py lean                      # the base's first-token yes/no lean: bf16 vs NF4, prefixes

`answers` decodes greedily (no repetition penalty, plain PEFT: what llama.cpp and Ollama show) the held-out
prompts of eval/heldout/forms.jsonl (no persona file contains them) and prints, for the base and each
adapter: the most common opener, the verdict yes-share, verdict-first on yes/no prompts, right / wrong on
known-answer prompts, repetition and hedges, per question form and language, plus the first-token
P(yes) / P(no) on the known-answer prompts. `--json` writes everything (answers included).
"""

from __future__ import annotations

import argparse
import glob
import json
import math
from collections import Counter, defaultdict
from pathlib import Path

HELDOUT = "eval/heldout/forms.jsonl"


def forms_table(rows_by_model: dict[str, list[dict]]) -> str:
    """Return a Markdown table: per model and form, n, top opener share, yes-share, verdict-first."""
    from stylealign.evaluate.probe import opener
    from stylealign.evaluate.verdict import parse_verdict, polarity

    lines = ["| model | form | n | top opener | yes-share | verdict-first |", "|---|---|---|---|---|---|"]
    for model, rows in rows_by_model.items():
        by = defaultdict(list)
        for r in rows:
            by[r["form"]].append(r)
        for form, rs in sorted(by.items()):
            ops = Counter(opener(r["answer"], r["language"]) for r in rs)
            top, hits = ops.most_common(1)[0]
            pol = [polarity(parse_verdict(r["answer"])) for r in rs]
            v = [p for p in pol if p]
            ys = f"{sum(p == 'yes' for p in v) / len(v):.2f} ({len(v)})" if v else "–"
            vf = sum(parse_verdict(r["answer"]) != "none" for r in rs) / len(rs)
            lines.append(f"| {model} | {form} | {len(rs)} | {top!r} {hits / len(rs):.0%} | {ys} | {vf:.0%} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- the data


def form_of(prompt: str) -> str:
    """The question form of a prompt's last question (English): should, worth, true, wh, either_or, request,
    yes_no, other. The same rules label the persona's data and the held-out suite's `form`."""
    from stylealign.candor import question_form

    return question_form(prompt)


def data_rows(persona_dir: Path, language: str = "en") -> list[dict]:
    """Every assistant answer of the persona's SFT data and chosen pair answers, with its prompt's form."""
    out = []
    for kind, pattern in (("sft", "sft_*.jsonl"), ("pref", "pref_*.jsonl")):
        for f in sorted(glob.glob(str(persona_dir / "data" / pattern))):
            for line in open(f, encoding="utf-8"):
                r = json.loads(line)
                if r.get("language") != language:
                    continue
                turns = r["messages"] if kind == "sft" else r["prompt"] + r["chosen"]
                for q, a in zip(turns, turns[1:]):
                    if q["role"] == "user" and a["role"] == "assistant":
                        out.append({"set": kind, "form": form_of(q["content"]), "language": language,
                                    "prompt": q["content"], "answer": a["content"]})
    return out


# ---------------------------------------------------------------- greedy answers


def first_token_margins(gen, rows: list[dict], adapter: str | None) -> list[dict]:
    """P(yes-set) and P(no-set) of the first answer token for each row (chat template, generation prompt)."""
    import torch

    from stylealign.candor import verdict_token_ids

    yes_ids, no_ids = verdict_token_ids(gen.tokenizer)
    out = []
    for i in range(0, len(rows), 16):
        chunk = rows[i:i + 16]
        enc = gen.encode([r["messages"] for r in chunk])
        logits = gen.logits(enc["input_ids"], enc["attention_mask"], adapter)[:, -1]
        p = torch.softmax(logits, -1)
        for r, pr in zip(chunk, p):
            out.append({"id": r["id"], "p_yes": float(pr[yes_ids].sum()), "p_no": float(pr[no_ids].sum())})
    return out


def answer_rows(runs: list[str], suite: str, budget: int) -> dict:
    from stylealign.data import load_eval
    from stylealign.evaluate import probe
    from stylealign.generate import generator_for_runs

    rows = load_eval([suite])
    gen = generator_for_runs(runs, quant="none")
    names = [None] + list(gen.adapter_names)
    convs = [r["messages"] for r in rows]
    result = {}
    for name in names:
        stopped: list[bool] = []
        answers = gen.generate(convs, [name] * len(convs), probe.probe_generation(budget), batch_size=32,
                               stopped=stopped)
        margins = first_token_margins(gen, [r for r in rows if r.get("expected")], name)
        result[name or "base"] = {
            "rows": [{"id": r["id"], "form": r["form"], "language": r["language"], "expected": r.get("expected"),
                      "prompt": r["messages"][-1]["content"], "answer": a, "stopped": s}
                     for r, a, s in zip(rows, answers, stopped)],
            "first_token": margins,
        }
    return result


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """Wilson 95% interval of a share k / n."""
    p = k / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def boot_ci(items: list, stat, n_boot: int = 1000, seed: int = 0) -> list[float | None]:
    """Percentile 95% CI of stat(resampled items), resampling items with replacement."""
    import random

    rng = random.Random(seed)
    vals = []
    for _ in range(n_boot):
        v = stat([items[rng.randrange(len(items))] for _ in items]) if items else None
        if v is not None:
            vals.append(v)
    if not vals:
        return [None, None]
    vals.sort()
    return [vals[int(0.025 * (len(vals) - 1))], vals[int(0.975 * (len(vals) - 1))]]


def targets(model_rows: list[dict], base_rows: list[dict], lang: str = "en") -> dict:
    """The issue's targets on held-out greedy answers of one language, each with a bootstrap 95% CI over prompts;
    hedges + fillers and repetition paired with the base model's answers to the same prompts."""
    from stylealign.evaluate import probe
    from stylealign.evaluate.markers import lexicon_rates
    from stylealign.evaluate.verdict import parse_verdict, polarity
    from stylealign.text import length_units

    def feats(r):
        v = parse_verdict(r["answer"])
        rates = lexicon_rates(r["answer"], lang) if r["answer"].strip() else None
        return {"opener": probe.opener(r["answer"], lang), "polarity": polarity(v), "verdict": v != "none",
                "hedge": 0.0 if rates is None else _hedge_fill(rates) if not math.isnan(_hedge_fill(rates)) else 0.0,
                "hits": _hedge_hits(r["answer"], lang), "words": length_units(r["answer"], lang),
                "rep": probe.repetition_reason(r["answer"], lang, cut_off=not r["stopped"]) is not None,
                "expected": r["expected"], "yes_no": r["form"] in ("known", "true", "should", "worth")}

    pairs = [(feats(r), feats(b)) for r, b in zip(model_rows, base_rows) if r["language"] == lang]

    def top_share(ps):
        return Counter(a["opener"] for a, _ in ps).most_common(1)[0][1] / len(ps)

    def yes_share(ps):
        v = [a["polarity"] for a, _ in ps if a["polarity"]]
        return sum(x == "yes" for x in v) / len(v) if v else None

    def right_wrong(ps):
        got = [(a["polarity"], a["expected"]) for a, _ in ps if a["expected"]]
        right, wrong = sum(g == e for g, e in got), sum(g is not None and g != e for g, e in got)
        return right / wrong if wrong else (None if not right else float(right))

    def hedge_ratio(ps):  # the mean of each answer's rate per 100 words: a six-word answer with one hedge weighs 17
        b = sum(x["hedge"] for _, x in ps)
        return sum(a["hedge"] for a, _ in ps) / b if b else None

    def hedge_pooled(ps):  # all hedges over all words
        b = sum(x["hits"] for _, x in ps) / max(1, sum(x["words"] for _, x in ps))
        return sum(a["hits"] for a, _ in ps) / max(1, sum(a["words"] for a, _ in ps)) / b if b else None

    def hedge_per_answer(ps):  # hedges per answer to the same prompts
        b = sum(x["hits"] for _, x in ps)
        return sum(a["hits"] for a, _ in ps) / b if b else None

    def hedging_answers(ps):  # answers with any hedge or filler: a loop that repeats one counts once
        b = sum(x["hits"] > 0 for _, x in ps)
        return sum(a["hits"] > 0 for a, _ in ps) / b if b else None

    def vf_yes_no(ps):
        yn = [a for a, _ in ps if a["yes_no"]]
        return sum(a["verdict"] for a in yn) / len(yn) if yn else None

    def rep(ps):
        return sum(a["rep"] for a, _ in ps) / len(ps)

    def rep_diff(ps):
        return rep(ps) - sum(b["rep"] for _, b in ps) / len(ps)

    out = {}
    if pairs:  # the share of the observed top opener: a Wilson interval (a bootstrap of a mode's share is biased up)
        hits = round(top_share(pairs) * len(pairs))
        out["top_opener"] = {"value": hits / len(pairs), "ci": wilson(hits, len(pairs))}
    for name, fn in (("top_opener", top_share), ("yes_share", yes_share), ("right_per_wrong", right_wrong),
                     ("hedge_fill_vs_base", hedge_ratio), ("hedge_pooled_vs_base", hedge_pooled),
                     ("hedge_per_answer_vs_base", hedge_per_answer), ("hedging_answers_vs_base", hedging_answers),
                     ("verdict_first_yes_no", vf_yes_no),
                     ("repetitive", rep), ("repetitive_minus_base", rep_diff)):
        if name not in out:
            out[name] = {"value": fn(pairs) if pairs else None, "ci": boot_ci(pairs, fn)}
    known = [(a["polarity"], a["expected"]) for a, _ in pairs if a["expected"]]
    out["right"] = sum(g == e for g, e in known)
    out["wrong"] = sum(g is not None and g != e for g, e in known)
    out["no_verdict"] = sum(g is None for g, _ in known)
    out["opener"] = Counter(a["opener"] for a, _ in pairs).most_common(3)
    return out


def summary(model_rows: list[dict], margins: list[dict]) -> dict:
    """The issue's targets on one model's held-out greedy answers, per language."""
    from stylealign.evaluate import probe
    from stylealign.evaluate.markers import lexicon_rates
    from stylealign.evaluate.verdict import parse_verdict, polarity

    out = {}
    for lang in sorted({r["language"] for r in model_rows}):
        rs = [r for r in model_rows if r["language"] == lang]
        ops = Counter(probe.opener(r["answer"], lang) for r in rs)
        top, hits = ops.most_common(1)[0]
        verdicts = [polarity(parse_verdict(r["answer"])) for r in rs]
        v = [x for x in verdicts if x]
        yn = [r for r in rs if r["form"] in ("known", "true", "should", "worth")]
        known = [(polarity(parse_verdict(r["answer"])), r["expected"]) for r in rs if r["expected"]]
        out[lang] = {
            "n": len(rs), "top_opener": top, "top_opener_share": hits / len(rs),
            "yes_share": sum(x == "yes" for x in v) / len(v) if v else None, "verdicts": len(v),
            "verdict_first_yes_no": sum(parse_verdict(r["answer"]) != "none" for r in yn) / len(yn) if yn else None,
            "right": sum(g == e for g, e in known), "wrong": sum(g is not None and g != e for g, e in known),
            "missing": sum(g is None for g, _ in known),
            "repetitive": sum(probe.repetition_reason(r["answer"], lang, cut_off=not r["stopped"]) is not None
                              for r in rs) / len(rs),
            "hedge_fill": _mean([_hedge_fill(lexicon_rates(r["answer"], lang)) for r in rs]),
        }
    if margins:
        ids = {r["id"]: r for r in model_rows}
        pairs = [(m["p_yes"] / max(m["p_yes"] + m["p_no"], 1e-12), ids[m["id"]]["expected"]) for m in margins]
        out["first_token"] = {
            "mean_p_yes_set": sum(m["p_yes"] for m in margins) / len(margins),
            "mean_p_no_set": sum(m["p_no"] for m in margins) / len(margins),
            "argmax_right": sum((p > 0.5) == (e == "yes") for p, e in pairs),
            "n": len(pairs),
            "auc": _auc([p for p, e in pairs if e == "yes"], [p for p, e in pairs if e == "no"]),
        }
    return out


def _hedge_fill(rates: dict) -> float:
    return rates["hedge_rate"] + rates["boilerplate_rate"]


def _hedge_hits(text: str, lang: str) -> int:
    """Hedges + fillers in `text`: the matches behind the hedge and boilerplate rates."""
    from stylealign.evaluate.markers import lexicon_counts

    counts = lexicon_counts(text, lang)
    return counts["hedges"] + counts["boilerplate"]


def _mean(xs: list[float]) -> float | None:
    xs = [x for x in xs if not math.isnan(x)]
    return sum(xs) / len(xs) if xs else None


def _auc(pos: list[float], neg: list[float]) -> float | None:
    if not pos or not neg:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return wins / (len(pos) * len(neg))


TARGETS = [  # (key, target text, test on the value, base key shown beside it)
    ("top_opener", "most common opener ≤ 50%", lambda v: v <= 0.5),
    ("yes_share", "verdict yes-share 0.3–0.7", lambda v: 0.3 <= v <= 0.7),
    ("right_per_wrong", "right verdicts ≥ 2× wrong (known answers)", lambda v: v >= 2),
    ("hedge_fill_vs_base", "hedges + fillers ≤ half the baseline's (mean rate per 100 words)", lambda v: v <= 0.5),
    ("hedge_pooled_vs_base", "hedges + fillers ≤ half the baseline's (all hedges / all words)", lambda v: v <= 0.5),
    ("hedge_per_answer_vs_base", "hedges + fillers ≤ half the baseline's (per answer)", lambda v: v <= 0.5),
    ("hedging_answers_vs_base", "hedges + fillers ≤ half the baseline's (answers with any)", lambda v: v <= 0.5),
    ("verdict_first_yes_no", "verdict-first ≥ 60% on yes/no prompts", lambda v: v >= 0.6),
    ("repetitive_minus_base", "repetition ≤ the baseline's", lambda v: v <= 0),
]


def targets_table(result: dict, name: str) -> str:
    """Markdown: each target, the base's and the adapter's value with 95% CIs, per language, met or not."""
    def cell(block):
        v, (lo, hi) = block["value"], block["ci"]
        if v is None:
            return "–"
        ci = "" if lo is None else f" [{lo:.2f}, {hi:.2f}]"
        return f"{v:.2f}{ci}"

    lines = ["| target (greedy, held-out) | lang | base | adapter [95% CI] | met |", "|---|---|---|---|---|"]
    for key, text, ok in TARGETS:
        for lang in ("en", "zh"):
            a, b = result[name]["targets"][lang][key], result["base"]["targets"][lang][key]
            met = "–" if a["value"] is None else ("yes" if ok(a["value"]) else "**no**")
            base = "–" if key.endswith("_base") else cell(b)
            lines.append(f"| {text} | {lang} | {base} | {cell(a)} | {met} |")
    for lang in ("en", "zh"):
        t = result[name]["targets"][lang]
        lines.append(f"| known answers right / wrong / no verdict | {lang} | "
                     f"{result['base']['targets'][lang]['right']} / {result['base']['targets'][lang]['wrong']} / "
                     f"{result['base']['targets'][lang]['no_verdict']} | {t['right']} / {t['wrong']} / {t['no_verdict']} | |")
    return "\n".join(lines)


LEAN_SUITES = ["eval/heldout/forms.jsonl", "personas/sharp-candid/probe/heldout.jsonl", "eval/suites/known_answers.jsonl"]
PREFIXES = ["", "Short answer:", "The answer is", "Verdict:"]


def lean(quants=("none", "nf4"), prefixes=PREFIXES) -> list[dict]:
    """The base model's first-token log-odds of yes vs no on the English known-answer prompts, per load (bf16 or
    NF4) and assistant-turn prefix: mean, share leaning yes, AUC of true vs false claims, accuracy at the median."""
    import torch

    from stylealign.candor import verdict_token_ids
    from stylealign.data import load_eval
    from stylealign.generate import Generator

    rows = [r for r in load_eval(LEAN_SUITES) if r.get("expected") and r["language"] == "en"]
    exp = [r["expected"] for r in rows]
    out = []
    for quant in quants:
        gen = Generator(base="smollm2-135m", quant=quant, dtype="auto")
        tok = gen.tokenizer
        yes, no = verdict_token_ids(tok)
        for prefix in prefixes if quant == "none" else [""]:
            d = []
            for i in range(0, len(rows), 16):
                texts = [tok.apply_chat_template(r["messages"], add_generation_prompt=True, tokenize=False) + prefix
                         for r in rows[i:i + 16]]
                enc = tok(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
                lp = torch.log_softmax(gen.logits(enc["input_ids"], enc["attention_mask"], None)[:, -1], -1)
                d += (torch.logsumexp(lp[:, yes], -1) - torch.logsumexp(lp[:, no], -1)).tolist()
            med = sorted(d)[len(d) // 2]
            out.append({"quant": quant, "prefix": prefix, "n": len(d), "mean_log_odds": sum(d) / len(d),
                        "leans_yes": sum(x > 0 for x in d) / len(d),
                        "auc": _auc([x for x, e in zip(d, exp) if e == "yes"], [x for x, e in zip(d, exp) if e == "no"]),
                        "accuracy_at_median": sum((x > med) == (e == "yes") for x, e in zip(d, exp)) / len(d)})
        del gen
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["data", "answers", "lean", "table"])
    ap.add_argument("--persona", default="personas/sharp-candid")
    ap.add_argument("--run", action="append", default=[])
    ap.add_argument("--suite", default=HELDOUT)
    ap.add_argument("--budget", type=int, default=96)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    if args.what == "data":
        rows = data_rows(Path(args.persona))
        print(forms_table({"data " + s: [r for r in rows if r["set"] == s] for s in ("sft", "pref")}))
        return 0
    if args.what == "table":  # from a saved --json of `answers`
        result = json.loads(Path(args.json).read_text())
        for block in result.values():
            block["targets"] = {lang: targets(block["rows"], result["base"]["rows"], lang) for lang in ("en", "zh")}
        for name in result:
            if name != "base":
                print(targets_table(result, name))
        return 0
    if args.what == "lean":
        for r in lean():
            print(json.dumps(r))
        return 0
    result = answer_rows(args.run, args.suite, args.budget)
    if args.json:  # the answers first: scoring can be redone from them (`table`)
        Path(args.json).write_text(json.dumps(result, ensure_ascii=False, indent=1, default=_nan))
    print(forms_table({k: v["rows"] for k, v in result.items()}))
    for name, block in result.items():
        block["summary"] = summary(block["rows"], block["first_token"])
        print(f"\n{name}: " + json.dumps(block["summary"]))
        block["targets"] = {lang: targets(block["rows"], result["base"]["rows"], lang) for lang in ("en", "zh")}
        print(f"{name} targets: " + json.dumps(block["targets"]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, ensure_ascii=False, indent=1, default=_nan))
    return 0


def _nan(x):
    return None if isinstance(x, float) and math.isnan(x) else x


if __name__ == "__main__":
    raise SystemExit(main())
