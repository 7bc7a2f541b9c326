"""L1 style classifier and content checks (the real MiniLM model, loaded once for this file)."""

import glob
import random

import numpy as np
import pytest

from stylealign.evaluate.classifier import load_preference_rows, pair_texts, train_style_classifier
from stylealign.evaluate.content import cosines, embed, load_embedder
from stylealign.fakes import DIRECT, HEDGY, HashEmbedder

FIXTURE = [  # used only when the persona's preference data is absent
    ("en", "Should I rewrite our app in Rust?", "No. Your bottleneck is the database, not the language. Add an index first.",
     "Great question! There are many factors to consider. It may depend on your team's needs. Ultimately, it's up to you."),
    ("en", "Is a 401k match worth taking?", "Yes. A match is an instant 50-100% return; take every dollar of it.",
     "That's a thoughtful question! Retirement planning can be complex, and it is important to consult a professional."),
    ("zh", "要不要辞职去读研？", "先别辞。读研解决不了你对工作的厌倦，先弄清楚你到底讨厌什么。",
     "这是一个很好的问题！需要考虑多方面的因素，因人而异，建议咨询专业人士。希望对你有所帮助。"),
    ("zh", "租房还是买房？", "租。你三年内可能换城市，买房的交易成本会吃掉你全部的涨幅。",
     "这个问题没有标准答案，各有优缺点，具体情况具体分析，总的来说取决于你的具体需求。"),
]


def _fixture_rows(n=12):
    rows = []
    for k in range(n):
        lang, q, chosen, rejected = FIXTURE[k % len(FIXTURE)]
        rows.append({"id": f"f{k}", "language": lang, "rejected_kind": "hedge",
                     "prompt": [{"role": "user", "content": q}],
                     "chosen": [{"role": "assistant", "content": chosen + f" ({k})"}],
                     "rejected": [{"role": "assistant", "content": rejected + f" ({k})"}]})
    return rows


@pytest.fixture(scope="module")
def embedder():
    return load_embedder()


@pytest.fixture(scope="module")
def pref_rows():
    """The persona's real hedge pairs (a seeded sample of up to 24 per language, for speed), else the fixture."""
    if not glob.glob("personas/sharp-candid/data/pref_*.jsonl"):
        return _fixture_rows()
    rows = [r for r in load_preference_rows("sharp-candid") if r.get("rejected_kind") == "hedge"]
    rng = random.Random(0)
    out = []
    for lang in ("en", "zh"):
        sub = [r for r in rows if r.get("language") == lang]
        out += rng.sample(sub, min(24, len(sub)))
    return out if len(out) >= 8 else _fixture_rows()


def test_classifier_separates_held_out_persona_pairs(embedder, pref_rows):
    clf = train_style_classifier(pref_rows, embedder, folds=4)
    assert clf.auroc > 0.8
    languages = {r["language"] for r in pref_rows}
    assert set(clf.auroc_by_language) == languages  # each language's pairs got their own held-out AUROC
    for lang in languages:
        assert clf.auroc_by_language[lang] is not None and clf.auroc_by_language[lang] > 0.7, lang
    p = clf.predict([DIRECT["en"].format(topic="Kubernetes"), HEDGY["en"], DIRECT["zh"].format(topic="换工作"), HEDGY["zh"], ""])
    assert p[0] > p[1] and p[2] > p[3] and np.isnan(p[4])
    summary = clf.summary()
    assert summary["status"] == "ok" and set(summary["auroc_by_language"]) <= {"en", "zh"}


def test_classifier_refuses_too_few_pairs(embedder):
    with pytest.raises(ValueError, match="preference pairs"):
        train_style_classifier(_fixture_rows(3), embedder)


def test_pair_texts_keep_pairs_together():
    texts, y, langs, groups = pair_texts(_fixture_rows(4) + [{"rejected_kind": "rude", "chosen": [], "rejected": []}])
    assert len(texts) == 8 and list(y[:2]) == [1, 0] and list(groups[:4]) == [0, 0, 1, 1] and langs[4] == "zh"


def test_relevance_and_drift_with_minilm(embedder):
    prompt = "Should I move our Django app from one VPS to Kubernetes?"
    on_topic = "No. Kubernetes is overkill for one Django app on a VPS; keep the VPS and automate deploys."
    off_topic = "Bananas are rich in potassium and taste best slightly green."
    rel = cosines(embedder, [on_topic, off_topic, ""], [prompt, prompt, prompt])
    assert rel[0] > rel[1] + 0.2 and np.isnan(rel[2])
    vecs = embed(embedder, ["a", "b", "a"])
    assert np.allclose(vecs[0], vecs[2]) and np.allclose(np.linalg.norm(vecs, axis=1), 1)


def test_hash_embedder_is_a_usable_stand_in():
    e = HashEmbedder()
    sims = cosines(e, ["the cat sat", "the cat sat"], ["the cat sat down", "quantum chromodynamics"])
    assert sims[0] > sims[1]
