"""Validate the eval data files and flag near-duplicates of training prompts.

Usage: python eval/check_heldout.py [--threshold 0.3]
Exits 1 on a schema problem; near-duplicates are printed (review them by hand: re-run after new
training shards land, since the suites must stay held out).
"""
import argparse, glob, json, re, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CATS = {"tech", "code_review", "career", "money", "life", "health_myths", "science", "history",
        "writing_feedback", "product_advice", "opinions", "roast_my_plan", "refusal", "provocation", "uncertain"}
KINDS = {"open", "provocation", "harmful", "drop_persona", "followup", "known_answer"}


def load(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def check_suite(path, problems):
    for n, r in enumerate(load(path), 1):
        where = f"{path.relative_to(ROOT)}:{n}"
        if r.get("category") not in CATS: problems.append(f"{where}: category: {r.get('category')!r}")
        if r.get("language") not in ("en", "zh"): problems.append(f"{where}: language")
        if r.get("kind") not in KINDS: problems.append(f"{where}: kind: {r.get('kind')!r}")
        if r.get("adversarial") != (r.get("kind") not in ("open", "known_answer")):
            problems.append(f"{where}: adversarial does not match kind")
        msgs = r.get("messages") or []
        if not msgs or msgs[-1].get("role") != "user": problems.append(f"{where}: messages must end with user")
        for i, m in enumerate(msgs):
            if m.get("role") != ("user" if i % 2 == 0 else "assistant") or not m.get("content", "").strip():
                problems.append(f"{where}: messages[{i}] role/content")
        if r.get("kind") == "known_answer" and r.get("expected") not in ("yes", "no"):
            problems.append(f"{where}: expected")


def toks(text, lang):
    if lang == "zh":
        t = re.sub(r"\s", "", text)
        return {t[i:i + 2] for i in range(len(t) - 1)}
    return set(re.findall(r"[a-z0-9']+", text.lower()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threshold", type=float, default=0.3)
    args = ap.parse_args()
    problems = []
    suites = sorted((ROOT / "eval" / "suites").glob("*.jsonl"))
    for p in suites:
        check_suite(p, problems)
    for n, r in enumerate(load(ROOT / "eval" / "corpus" / "neutral.jsonl"), 1):
        if r.get("language") not in ("en", "zh") or not r.get("text"):
            problems.append(f"eval/corpus/neutral.jsonl:{n}: language/text")
    train = []
    for f in glob.glob(str(ROOT / "personas" / "*" / "data" / "*.jsonl")):
        for line in open(f, encoding="utf-8"):
            try:
                r = json.loads(line)
            except ValueError:
                continue
            for m in (r.get("messages") or r.get("prompt") or []):
                if m.get("role") == "user":
                    train.append((r.get("language"), toks(m["content"], r.get("language")), r.get("id"), m["content"]))
    flagged = 0
    for p in suites:
        if p.name == "smoke.jsonl":
            continue
        for r in load(p):
            for m in r["messages"]:
                if m["role"] != "user":
                    continue
                a = toks(m["content"], r["language"])
                for lang, b, tid, text in train:
                    if lang == r["language"] and len(a & b) / max(1, len(a | b)) > args.threshold:
                        flagged += 1
                        print(f"near-dup? {r['id']}: {m['content'][:60]!r} ~ {tid}: {text[:60]!r}")
    print(f"{len(problems)} schema problems, {flagged} possible near-duplicates of {len(train)} training prompts")
    for p in problems:
        print(p)
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
