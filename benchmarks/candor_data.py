"""The rewrite that made sharp-candid's English verdict openers diverse (persona data, not run by the kit).

    python benchmarks/candor_data.py personas/sharp-candid --dry-run   # counts only
    python benchmarks/candor_data.py personas/sharp-candid             # rewrite the en data files in place

Measured (benchmarks/CANDOR.md): with a bare "Yes." / "No." opening most verdicts, a few LoRA steps make
one of the two the mode of every answer, and greedy decoding takes the mode. This rewrite keeps every verdict and
its polarity but spreads its wording, deterministically (seeded by row id):

- a bare "Yes." / "No." answering an auxiliary question ("Is ...?", "Do I ...?", "Can we ...?") becomes, for half
  of the rows, the auxiliary itself: "It is." / "It isn't.", "You do." / "You don't.", "They are." / "They aren't.";
  the polarity then sits on the second token, after the subject, where no single token is the verdict;
- an either/or question ("X or Y?") gets no yes/no verdict: a leading "Yes," / "No," is dropped;
- a refusal of a request that is not a yes/no question opens with "I won't help with that." instead of "No.".
Chinese rows are left as they are.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
from pathlib import Path

AUX_IT = {"is": ("is", "isn't"), "was": ("was", "wasn't"), "does": ("does", "doesn't"), "did": ("did", "didn't"),
          "can": ("can", "can't"), "will": ("will", "won't"), "has": ("has", "hasn't"), "could": ("could", "couldn't"),
          "would": ("would", "wouldn't"), "should": ("should", "shouldn't")}
AUX_THEY = {"are": ("are", "aren't"), "do": ("do", "don't"), "have": ("have", "haven't"), "were": ("were", "weren't")}
AUX_YOU = {"do": ("do", "don't"), "can": ("can", "can't"), "should": ("should", "shouldn't"), "am": ("are", "aren't"),
           "will": ("will", "won't"), "could": ("could", "couldn't"), "did": ("did", "didn't"), "would": ("would", "wouldn't"),
           "must": ("must", "don't have to"), "have": ("have", "haven't")}
SHARE = 0.5  # of eligible rows rewritten to the auxiliary form


def last_question(prompt: str) -> str:
    parts = [p.strip() for p in re.split(r"(?<=[.!?])\s+", prompt.strip()) if p.strip()]
    qs = [p for p in parts if p.endswith("?")]
    return qs[-1] if qs else ""


def auxiliary_opener(question: str, yes: bool) -> str | None:
    """Return "It is." / "You don't." ... for a question that starts with an auxiliary, else None."""
    words = re.findall(r"[A-Za-z']+", question.lower())
    if len(words) < 2:
        return None
    aux, subject = words[0], words[1]
    if subject in ("i", "we") and aux in AUX_YOU:
        pos, neg = AUX_YOU[aux]
        return f"You {pos if yes else neg}."
    if subject in ("you", "i", "we"):
        return None
    if aux in AUX_IT:
        pos, neg = AUX_IT[aux]
        return f"It {pos if yes else neg}."
    if aux in AUX_THEY:
        pos, neg = AUX_THEY[aux]
        return f"They {pos if yes else neg}."
    return None


def _picked(key: str) -> bool:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < SHARE


def rewrite_answer(prompt: str, answer: str, key: str) -> tuple[str, str | None]:
    """Return (answer, what was done or None)."""
    from stylealign.candor import question_form

    form = question_form(prompt)
    m = re.match(r"(Yes|No)\.\s+(?=\S)", answer)
    if form == "either_or":
        lead = re.match(r"(Yes|No)[,.]\s+(?=\S)", answer)
        if lead:
            rest = answer[lead.end():]
            return rest[:1].upper() + rest[1:], "either_or"
        return answer, None
    if m and m.group(1) == "No" and form in ("request", "wh") and not last_question(prompt).lower().startswith(
            tuple(AUX_IT) + tuple(AUX_THEY) + tuple(AUX_YOU)):
        return "I won't help with that. " + answer[m.end():], "refusal"
    if m and _picked(key):
        new = auxiliary_opener(last_question(prompt), m.group(1) == "Yes")
        if new:
            return f"{new} {answer[m.end():]}", "auxiliary"
    return answer, None


def rewrite_file(path: Path, dry_run: bool) -> dict:
    counts: dict = {}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    for row in rows:
        turns = row["messages"] if "messages" in row else row["prompt"] + row["chosen"]
        for i, (q, a) in enumerate(zip(turns, turns[1:])):
            if q["role"] == "user" and a["role"] == "assistant" and (a in row.get("chosen", [a]) or "messages" in row):
                new, what = rewrite_answer(q["content"], a["content"], f"{row.get('id')}:{i}")
                if what:
                    a["content"] = new
                    counts[what] = counts.get(what, 0) + 1
    if not dry_run and counts:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("persona")
    ap.add_argument("--dry-run", action="store_true")
    args = ap.parse_args(argv)
    total: dict = {}
    for f in sorted(Path(args.persona, "data").glob("*_en_*.jsonl")):
        for k, v in rewrite_file(f, args.dry_run).items():
            total[k] = total.get(k, 0) + v
    print(json.dumps(total))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

