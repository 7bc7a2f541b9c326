"""The filters every prompt and pair passes; each decision is one of FILTERS (or "kept") in the summary.

Answer filters judge the teacher's answer alone (empty, cut off at the token budget, unfinished, wrong
language, repetition); pair filters judge the finished pair (chosen ≈ rejected, misses the persona's
targets); `near_duplicates` drops prompts already in the persona's data or an eval suite, so synthetic
rows never leak an eval prompt into training.
"""

from __future__ import annotations

import re
from pathlib import Path

from stylealign.synth.jobs import Job

FILTERS = ("near_duplicate", "empty", "truncated", "unfinished", "wrong_language", "repetition",
           "chosen_like_rejected", "misses_targets")
SAME_ANSWER = 0.9  # char n-gram cosine at which chosen and rejected say the same thing
_END = re.compile(r"[.!?。！？…)\]\"'”’」』`*:：~]\s*$|```\s*$")


def answer_problem(text: str, language: str, cut_off: bool = False) -> str | None:
    """Return the filter an in-character answer fails (empty, truncated: `cut_off` at the token budget,
    unfinished, wrong_language, repetition), or None."""
    from stylealign.evaluate.probe import repetition_reason
    from stylealign.text import language_problem

    if not text.strip():
        return "empty"
    if cut_off:
        return "truncated"
    if not _END.search(text):
        return "unfinished"
    if language_problem(text, language):
        return "wrong_language"
    if repetition_reason(text, language):  # the coherence probe's rule
        return "repetition"
    return None


def pair_problem(row: dict, persona, lexicons: dict, same: set[str]) -> str | None:
    """Return the filter a finished pair fails (empty rejected, wrong language of the whole row, chosen ≈
    rejected, misses the persona's targets), or None. `same`: keys whose chosen ≈ rejected."""
    from stylealign.evaluate.targets import target_comparison
    from stylealign.persona_data import row_text
    from stylealign.text import language_problem

    chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
    if not rejected.strip() or not all(t["content"].strip() for t in row["prompt"]):
        return "empty"
    if language_problem(row_text(row), row["language"]):
        return "wrong_language"
    if row["id"] in same or " ".join(chosen.split()) == " ".join(rejected.split()):
        return "chosen_like_rejected"
    wins, losses = target_comparison(chosen, rejected, row["language"], persona, lexicons)
    return "misses_targets" if len(losses) > len(wins) else None


def alike_pairs(rows: list[dict], threshold: float = SAME_ANSWER) -> set[str]:
    """Return the ids of rows whose chosen and rejected answers are near-identical (char n-gram cosine)."""
    from stylealign.neardup import PromptRef, similar_prompts

    refs = [PromptRef(side, r["id"], r["id"], r[side][0]["content"]) for r in rows for side in ("chosen", "rejected")
            if r[side][0]["content"].strip()]
    pairs = similar_prompts(refs, min_score=threshold, compare=lambda a, b: a.id == b.id and a.set != b.set)
    return {p.a.id for p in pairs if p.score >= threshold}


def near_duplicates(jobs: list[Job], persona, threshold: float) -> dict[str, str]:
    """Return {job key: what it nearly duplicates} for jobs whose first user turn is a near-duplicate of
    the persona's data, an eval suite, or an earlier job (from another source row); checker's search."""
    from stylealign.neardup import PromptRef, same_source, similar_prompts

    existing = existing_prompts(persona)
    refs = existing + [PromptRef("synth", j.source, j.key, j.prompt[0]["content"]) for j in jobs]
    order = {j.key: i for i, j in enumerate(jobs)}
    compare = lambda a, b: "synth" in (a.set, b.set) and not same_source(a, b)
    found: dict[str, str] = {}
    for p in similar_prompts(refs, min_score=threshold + 1e-9, compare=compare):
        if p.score <= threshold:
            break
        a, b = (p.a, p.b) if p.b.set == "synth" else (p.b, p.a)  # b: the synth job to drop
        if a.set == "synth" and order[a.id] > order[b.id]:
            a, b = b, a
        found.setdefault(b.id, f"{a.set}:{a.id} ({a.where}) {p.score:.2f}")
    return found


def existing_prompts(persona) -> list:
    """Return the first user turns of the persona's SFT, preference and eval rows, and of the kit's eval suites."""
    from stylealign import data as D
    from stylealign.neardup import PromptRef
    from stylealign.persona_data import load_sets

    sets, _ = load_sets(persona)
    refs = [PromptRef(kind, f"{r.file}:{r.line}", r.row.get("id"), D.first_user_turn(r.row))
            for kind, loaded in sets.items() if kind != "baseline" for r in loaded.records if D.first_user_turn(r.row)]
    seen = {ref.where.rsplit(":", 1)[0] for ref in refs}
    for path in sorted(Path(persona.path).resolve().parents[1].glob("eval/suites/*.jsonl")) + persona.eval_suite_files():
        if D.show_path(path) in seen:
            continue
        records, _ = D.read_file(path)
        refs += [PromptRef("eval", f"{r.file}:{r.line}", r.row.get("id"), D.first_user_turn(r.row))
                 for r in records if D.first_user_turn(r.row)]
        seen.add(D.show_path(path))
    return refs
