"""Retention math (perplexity, KL) through the Generator.logits/tokenizer API, on a fake model."""

import math

import pytest
import torch

from stylealign.evaluate.retention import kl_per_token, perplexity, retention_section, token_nll
from stylealign.fakes import FakeGenerator

CONVS = [[{"role": "user", "content": "Is it worth it?"}], [{"role": "user", "content": "值得吗？"}]]


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    gen = FakeGenerator()
    gen._w = torch.zeros_like(gen._w)  # uniform next-token distribution
    pairs = token_nll(gen, ["hello world", "abc"], None)
    assert [c for _, c in pairs] == [10, 2]  # padding is not scored
    assert perplexity(pairs) == pytest.approx(gen.tokenizer.vocab_size)
    assert perplexity([]) is None


def test_kl_is_zero_for_the_base_and_grows_with_strength():
    gen = FakeGenerator(adapters=("a",))
    kl = kl_per_token(gen, CONVS, ["No.", ""], [("a", 0.0), ("a", 0.5), ("a", 1.0)])
    assert kl[("a", 0.0)] == pytest.approx([0.0, 0.0], abs=1e-6)
    assert all(x > 0 for x in kl[("a", 0.5)])
    assert all(hi > lo for lo, hi in zip(kl[("a", 0.5)], kl[("a", 1.0)]))


def test_kl_scores_only_the_continuation_tokens():
    gen = FakeGenerator(adapters=("a",))
    # The fake is a bigram model, so each position's KL depends only on its own token. Two different prompts
    # followed by the same answer give the same KL only if the prompt positions are excluded.
    kl = kl_per_token(gen, [CONVS[0], [{"role": "user", "content": "Totally different?"}]], ["No way.", "No way."], [("a", 1.0)])
    assert kl[("a", 1.0)][0] == pytest.approx(kl[("a", 1.0)][1], rel=1e-5)


def test_retention_section_reports_ratio_per_language():
    gen = FakeGenerator(adapters=("a",))
    corpus = [{"language": "en", "text": "Bread rises because of yeast."}, {"language": "zh", "text": "面包因酵母而发起来。"}]
    out = retention_section(gen, corpus, [("a", 1.0)], CONVS, ["No.", "不。"], ["en", "zh"], {("a", 1.0): "a"})
    block = out["variants"]["a"]
    assert block["ppl_ratio"] == pytest.approx(block["ppl_adapter"] / block["ppl_base"])
    assert set(block["by_language"]) == {"en", "zh"} and block["kl_per_token"] > 0
    assert math.isfinite(block["by_language"]["zh"]["ppl_base"])
