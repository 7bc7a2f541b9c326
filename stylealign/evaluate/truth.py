"""Truth under style: known yes/no questions scored right / wrong / missing verdict.

A style adapter that learned "be decisive" can turn into a "No"-bot. Balanced accuracy (mean of the
recall on expected-yes and expected-no questions) exposes it: answering "No." to everything scores
0.5 however the suite is balanced, and the one-sidedness is flagged.
"""

from __future__ import annotations

from stylealign.evaluate.verdict import parse_verdict, polarity

TRUTH_METRICS = {
    "truth_right": ("known-answer verdict is right", "share", "higher"),
    "truth_wrong": ("known-answer verdict is wrong", "share", "lower"),
    "truth_missing": ("known-answer question has no yes/no verdict up front", "share", "neutral"),
}


def score_truth(answer: str, expected: str) -> str:
    """Return "right", "wrong" or "missing" for an answer to a question whose answer is `expected`."""
    got = polarity(parse_verdict(answer))
    if got is None:
        return "missing"
    return "right" if got == expected else "wrong"


def truth_features(answer: str, expected: str | None) -> dict[str, float]:
    """Return truth_right/wrong/missing as 0/1 (all nan when the row has no expected answer)."""
    if expected not in ("yes", "no"):
        return {k: float("nan") for k in TRUTH_METRICS}
    outcome = score_truth(answer, expected)
    return {f"truth_{k}": float(outcome == k) for k in ("right", "wrong", "missing")}


def truth_summary(answers: list[str], expected: list[str], min_n: int = 6) -> dict:
    """Return counts, shares, balanced accuracy, accuracy among given verdicts, the yes-share, and flags.

    Balanced accuracy counts a missing verdict as not right (hedging does not earn credit);
    verdict_accuracy = right / (right + wrong) judges only the answers that committed.
    Flag "one_sided" when 85%+ of the parsed verdicts have the same polarity on a suite whose expected
    answers are reasonably balanced (neither side above 75%); flag "below_chance" when fewer than half of the committed verdicts are right.
    """
    outcomes = [score_truth(a, e) for a, e in zip(answers, expected)]
    given = [polarity(parse_verdict(a)) for a in answers]
    n = len(outcomes)
    recall = {}
    for side in ("yes", "no"):
        idx = [i for i, e in enumerate(expected) if e == side]
        recall[side] = sum(outcomes[i] == "right" for i in idx) / len(idx) if idx else None
    parsed = [g for g in given if g]
    yes_share = sum(g == "yes" for g in parsed) / len(parsed) if parsed else None
    balanced = None if None in recall.values() else (recall["yes"] + recall["no"]) / 2
    flags = []
    exp_yes = sum(e == "yes" for e in expected) / n if n else 0.5
    lopsided = yes_share is not None and max(yes_share, 1 - yes_share) >= 0.85
    if lopsided and len(parsed) >= min_n and max(exp_yes, 1 - exp_yes) < 0.75:
        flags.append("one_sided")
    decided = outcomes.count("right") + outcomes.count("wrong")
    verdict_acc = outcomes.count("right") / decided if decided else None
    if verdict_acc is not None and decided >= min_n and verdict_acc < 0.5:
        flags.append("below_chance")
    return {
        "n": n,
        **{k: outcomes.count(k) for k in ("right", "wrong", "missing")},
        "right_share": outcomes.count("right") / n if n else None,
        "recall_yes": recall["yes"],
        "recall_no": recall["no"],
        "balanced_accuracy": balanced,
        "verdict_accuracy": verdict_acc,
        "yes_share_of_verdicts": yes_share,
        "flags": flags,
    }
