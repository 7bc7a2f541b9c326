"""The generation layer: one base, named adapters, mixed-adapter batches, strengths, streaming."""

from __future__ import annotations

import pytest
import torch

from stylealign.generate import GenerationConfig, Generator

CONVS = [
    [{"role": "user", "content": "Is a Raspberry Pi enough for a home media server?"}],
    [{"role": "user", "content": "Name one fruit."}],
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Why?"}],
]


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory, tiny_model_dir):
    """Return a folder with a randomly initialised (non-zero) LoRA adapter for the tiny model."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=64, target_modules="all-linear", init_lora_weights=False))
    out = tmp_path_factory.mktemp("adapter")
    peft.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def gen(tiny_model_dir, adapter_dir):
    g = Generator(base=str(tiny_model_dir), quant="none", dtype="fp32")
    g.add_adapter("style", str(adapter_dir))
    return g


def test_greedy_decoding_matches_transformers_generate(tiny_model_dir):
    g = Generator(base=str(tiny_model_dir), quant="none", dtype="fp32")
    cfg = GenerationConfig(max_new_tokens=12, do_sample=False, repetition_penalty=1.0)
    ours = [tok for step in g._decode(CONVS[:1], [None], cfg) for tok in step.values()]
    enc = g.encode(CONVS[:1])
    out = g.model.generate(**enc, max_new_tokens=12, do_sample=False, eos_token_id=g.tokenizer.eos_token_id,
                           pad_token_id=g.tokenizer.pad_token_id)
    theirs = [t for t in out[0, enc["input_ids"].shape[1]:].tolist() if t != g.tokenizer.eos_token_id]
    assert ours == theirs and len(ours) > 0


def test_row_of_mixed_batch_equals_row_alone(gen):
    cfg = GenerationConfig(max_new_tokens=16, seed=7)
    adapters = [None, "style", "style", None, "style", None]
    batch = gen.generate(CONVS * 2, adapters, cfg, batch_size=6)
    alone = [gen.generate([c], [a], cfg)[0] for c, a in zip(CONVS * 2, adapters)]
    assert batch == alone
    assert batch[0] != batch[3 + 1] or CONVS[0] != CONVS[1]  # rows really differ by adapter
    assert gen.generate(CONVS[:1], ["style"], cfg) != gen.generate(CONVS[:1], [None], cfg)


def test_strength_zero_is_baseline_and_one_is_adapter(gen):
    cfg = GenerationConfig(max_new_tokens=16, seed=3)
    base = gen.generate(CONVS, [None] * 3, cfg)
    full = gen.generate(CONVS, ["style"] * 3, cfg)
    assert gen.generate(CONVS, ["style"] * 3, cfg, strengths={"style": 0.0}) == base
    assert gen.generate(CONVS, ["style"] * 3, cfg, strengths={"style": 1.0}) == full
    # and the scaling is restored afterwards
    assert gen.generate(CONVS, ["style"] * 3, cfg) == full


def test_same_seed_reproduces_and_other_seed_differs(gen):
    a = gen.generate(CONVS, ["style"] * 3, GenerationConfig(max_new_tokens=16, seed=1))
    b = gen.generate(CONVS, ["style"] * 3, GenerationConfig(max_new_tokens=16, seed=1))
    c = gen.generate(CONVS, ["style"] * 3, GenerationConfig(max_new_tokens=16, seed=2))
    assert a == b and a != c


def test_stream_grows_to_the_generated_text(gen):
    cfg = GenerationConfig(max_new_tokens=10, seed=5)
    steps = list(gen.stream(CONVS[:2], [None, "style"], cfg))
    assert len(steps) > 1
    for earlier, later in zip(steps, steps[1:]):
        assert all(len(x) <= len(y) + 1 for x, y in zip(earlier, later))
    assert steps[-1] == gen.generate(CONVS[:2], [None, "style"], cfg)


def test_unknown_adapter_and_bad_config_fail_clearly(gen):
    with pytest.raises(ValueError, match="unknown adapter"):
        gen.generate(CONVS[:1], ["nope"], GenerationConfig())
    with pytest.raises(ValueError, match="conversations but"):
        gen.generate(CONVS[:2], [None], GenerationConfig())
    with pytest.raises(ValueError, match="temperature"):
        GenerationConfig(temperature=0)
    with pytest.raises(ValueError, match="already taken"):
        gen.add_adapter("style", "unused")


def test_logits_route_by_adapter(gen):
    enc = gen.encode(CONVS[:1])
    base = gen.logits(enc["input_ids"], enc["attention_mask"], None)
    styled = gen.logits(enc["input_ids"], enc["attention_mask"], "style")
    assert base.shape == styled.shape and not torch.allclose(base, styled)
    with gen.strengths({"style": 0.0}):
        assert torch.allclose(gen.logits(enc["input_ids"], enc["attention_mask"], "style"), base)


@pytest.mark.parametrize("top_p", [0.3, 0.999])
def test_nucleus_searched_in_the_top_k_samples_as_a_full_sort(top_p):
    """pick_tokens looks for the nucleus among the top k first; whether the nucleus fits there (top_p 0.3)
    or not (0.999: falls back to a full sort), each row's pick equals the full-vocabulary sampler's."""
    from stylealign.generate import GenerationConfig, pick_tokens

    cfg = GenerationConfig(temperature=1.0, top_p=top_p, repetition_penalty=1.3)
    logits = torch.randn(6, 500, generator=torch.Generator().manual_seed(0)) * 3
    seen = [{1, 2, 3}, set(), {7}, set(), {0, 499}, set()]
    picks = {}
    for k in (500, 8):
        picks[k] = [pick_tokens(logits.clone(), seen, [torch.Generator().manual_seed(s) for _ in range(6)], cfg, top_k=k)
                    for s in range(40)]
    assert picks[8] == picks[500]
    assert len({tuple(p) for p in picks[8]}) > 1  # it samples
    greedy = pick_tokens(logits.clone(), seen, [None] * 6, GenerationConfig(do_sample=False, repetition_penalty=1.0))
    assert greedy == logits.argmax(-1).tolist()
