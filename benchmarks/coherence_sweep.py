"""The coherence sweep behind the CPU recipe and the default decoding settings (docs/EVALUATION.md, "Style that holds up").

    python benchmarks/coherence_sweep.py table RUN [RUN ...]      # every run's checkpoint candidates, Markdown
    python benchmarks/coherence_sweep.py decoding RUN [--limit N]  # decoding settings vs repetition and relevance

`table` reads what `train all` recorded: each candidate's greedy probe scores on the persona's held-out
probe prompts, the base model's, and which candidate the rule published. `decoding` answers held-out
English prompts (style_en + known_answers, never training data) with the baseline and the run's adapter
under several decoding settings and reports, per setting, the repetitive share (the probe's rule),
relevance (MiniLM cosine to the prompt), verdict-first and the top opener's share.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from stylealign.manifest import read_manifest
from stylealign.text import plain_turns
from stylealign.text import table as markdown_table

DECODING = {  # name -> GenerationConfig fields
    "greedy": dict(do_sample=False, repetition_penalty=1.0),
    "greedy, rep 1.2": dict(do_sample=False, repetition_penalty=1.2),
    "T 0.3, top-p 0.9, rep 1.1": dict(temperature=0.3, top_p=0.9, repetition_penalty=1.1),
    "T 0.3, top-p 0.9, rep 1.2": dict(temperature=0.3, top_p=0.9, repetition_penalty=1.2),
    "T 0.7, top-p 0.9, rep 1.1": dict(temperature=0.7, top_p=0.9, repetition_penalty=1.1),
}


def pct(x) -> str:
    return "–" if x is None else f"{x:.0%}"


def candidate_rows(run: Path) -> list[list[str]]:
    """Return one table row per candidate of a finished run (and one for the base model)."""
    sel = read_manifest(run).selection
    if sel.get("status") != "ok":
        return [[run.name, "–", "selection off", "", "", "", "", ""]]
    rows = [[run.name, "base", *score_cells(sel["baseline"]), ""]]
    for c in sel["candidates"]:
        mark = "**published**" if c["path"] == sel["selected"]["path"] else ""
        rows.append([run.name, f"{c['stage']} {c['step']}", *score_cells(c["scores"]), mark])
    return rows


def score_cells(s: dict) -> list[str]:
    known = s["verdicts"]["known_answer"]
    return [pct(s["verdict_first"]), pct(s["repetitive"]), pct(s["top_opener"]), pct(s["yes_share"]),
            f"{known['right']}/{known['wrong']}/{known['no_verdict']}", f"{s['hedge_fill']:.2f}"]


def table(runs: list[str]) -> str:
    header = ["run", "candidate", "verdict-first", "repetitive", "top opener", "yes-share", "known r/w/none",
              "hedges+fillers", ""]
    return markdown_table(header, [r for run in runs for r in candidate_rows(Path(run))])


def decoding(run: str, limit: int) -> str:
    """Return a Markdown table: per decoding setting, baseline and adapter repetition, relevance, style."""
    from stylealign.data import load_eval
    from stylealign.evaluate import probe
    from stylealign.evaluate.content import cosines, load_embedder
    from stylealign.generate import GenerationConfig, generator_for_runs

    rows = load_eval(["eval/suites/style_en.jsonl"])[:limit] + \
        [r for r in load_eval(["eval/suites/known_answers.jsonl"]) if r.get("language") == "en"][:limit // 2]
    convs = [plain_turns(r["messages"]) for r in rows]
    gen, embedder = generator_for_runs([run]), load_embedder()
    name, prompts = gen.adapter_names[0], [c[-1]["content"] for c in convs]
    out = []
    for label, fields in DECODING.items():
        stopped: list[bool] = []
        texts = gen.generate(convs + convs, [None] * len(convs) + [name] * len(convs),
                             GenerationConfig(max_new_tokens=160, **fields), batch_size=16, stopped=stopped)
        for who, part, st in (("baseline", texts[:len(convs)], stopped[:len(convs)]),
                              ("adapter", texts[len(convs):], stopped[len(convs):])):
            s = probe.summarize(part, rows, st)
            rel = float(sum(cosines(embedder, part, prompts)) / len(part))
            out.append([label, who, pct(s["repetitive"]), f"{rel:.2f}", pct(s["verdict_first"]), pct(s["top_opener"]),
                        pct(s["stopped"])])
    return markdown_table(["decoding", "model", "repetitive", "relevance", "verdict-first", "top opener", "stopped"], out) + \
        f"\n\n{len(rows)} held-out English prompts, 160 new tokens, seed 0."


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("table")
    t.add_argument("runs", nargs="+")
    d = sub.add_parser("decoding")
    d.add_argument("run")
    d.add_argument("--limit", type=int, default=24)
    args = p.parse_args()
    print(table(args.runs) if args.cmd == "table" else decoding(args.run, args.limit))


if __name__ == "__main__":
    main()
