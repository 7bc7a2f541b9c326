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


# What a mixed-adapter batch guarantees (docs/CONTRACTS.md, "Mixed-adapter batches"): a row's logits at every
# decode step are within a tolerance of the same row decoded alone (matmul kernels block differently for other
# batch shapes, so bits may differ on any CPU), and its greedy tokens are the same until the first near tie (top
# two logits within twice the tolerance). Tolerance: max(atol, rtol * max |logit|). Measured on AMD EPYC (no
# native bf16), tiny model / SmolLM2-135M: max |dlogit| 2.1e-5 / 1.0e-4 in fp32, 0.033 / 1.25 in bf16 (3-4%).
TOLERANCE = {"fp32": (1e-4, 1e-5), "bf16": (0.0, 0.08)}


def _tolerance(dtype: str, logits) -> float:
    atol, rtol = TOLERANCE[dtype]
    return max(atol, rtol * float(logits.abs().max()))


def _recorded_decode(gen, convs, adapters, cfg, monkeypatch) -> tuple[list[list[int]], list]:
    """Return (tokens per row, [B, V] logits per step) of a greedy decode of `convs` in one batch."""
    from stylealign import decoding

    steps, real = [], decoding.pick_tokens
    monkeypatch.setattr(decoding, "pick_tokens", lambda logits, *a, **k: (steps.append(logits.clone()),
                                                                           real(logits, *a, **k))[1])
    tokens = [[] for _ in convs]
    for emitted in gen._decode(convs, adapters, cfg):
        for row, tok in emitted.items():
            tokens[row].append(tok)
    return tokens, steps


def _compare_rows(gen, adapters, monkeypatch, dtype: str) -> tuple[int, int]:
    """Check every row of a mixed batch against the row alone; return (steps compared, steps with a near tie)."""
    cfg = GenerationConfig(max_new_tokens=16, do_sample=False, repetition_penalty=1.0)
    convs = CONVS * 2
    batch_tokens, batch_steps = _recorded_decode(gen, convs, adapters, cfg, monkeypatch)
    compared = ties = 0
    for r, (conv, adapter) in enumerate(zip(convs, adapters)):
        alone_tokens, alone_steps = _recorded_decode(gen, [conv], [adapter], cfg, monkeypatch)
        for s, alone in enumerate(alone_steps):
            top2, tol = alone[0].topk(2).values, _tolerance(dtype, alone[0])
            assert float((batch_steps[s][r] - alone[0]).abs().max()) <= tol, (r, s)
            compared += 1
            if float(top2[0] - top2[1]) <= 2 * tol:  # a near tie: the rows may part here, and stop being comparable
                ties += 1
                break
            assert batch_tokens[r][s:s + 1] == alone_tokens[0][s:s + 1], (r, s)
    return compared, ties


def test_row_of_mixed_batch_matches_row_alone_fp32(gen, monkeypatch):
    compared, ties = _compare_rows(gen, [None, "style", "style", None, "style", None], monkeypatch, "fp32")
    assert ties == 0 and compared > 6, "fp32: same greedy tokens over the whole horizon (no near tie on these prompts)"


def test_row_of_mixed_batch_matches_row_alone_bf16(tiny_model_dir, adapter_dir, monkeypatch):
    g = Generator(base=str(tiny_model_dir), quant="none", dtype="bf16")
    g.add_adapter("style", str(adapter_dir))
    compared, _ = _compare_rows(g, [None, "style", "style", None, "style", None], monkeypatch, "bf16")
    assert compared >= 6  # at least the prompt step of every row


def test_mixed_batch_rows_really_differ_by_adapter(gen):
    cfg = GenerationConfig(max_new_tokens=16, seed=7)
    batch = gen.generate(CONVS[:1] * 2, [None, "style"], cfg, batch_size=2)
    assert batch[0] != batch[1]
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
    from stylealign.decoding import pick_tokens
    from stylealign.generate import GenerationConfig

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



def test_rows_that_stop_leave_the_batch_and_the_rest_decode_as_alone(gen, monkeypatch):
    """A row that emits a stop token leaves the batch (cache, mask, RNG, routing); the rows left decode on in the
    smaller batch and still give what each gives decoded alone (fp32 tolerance), in a mixed batch too."""
    from stylealign import decoding

    cfg = GenerationConfig(max_new_tokens=16, do_sample=False, repetition_penalty=1.0)
    convs, adapters = CONVS * 2, [None, "style", "style", None, "style", None]
    free, _ = _recorded_decode(gen, convs, adapters, cfg, monkeypatch)
    # a stop id that ends some rows early and never comes up in others: some row's 3rd token
    stop = next(({t[2]} for t in free if sum(t[2] in u for u in free) < len(free)), None)
    assert stop, "the test prompts give rows with distinct early tokens"
    monkeypatch.setattr(gen, "_stop_ids", lambda: stop)
    kept = []
    real_prune = decoding.LiveRows.prune
    monkeypatch.setattr(decoding.LiveRows, "prune", lambda self, keep: (kept.append(int(keep.sum())), real_prune(self, keep))[1])
    stopped: list[bool] = []
    batch = [[] for _ in convs]
    for emitted in gen._decode(convs, adapters, cfg, stopped):
        for row, tok in emitted.items():
            batch[row].append(tok)
    assert kept and kept[0] < len(convs), "a stopped row left the batch"
    assert any(stopped) and not all(stopped)
    for r, (conv, adapter) in enumerate(zip(convs, adapters)):
        alone = [[]]
        for emitted in gen._decode([conv], [adapter], cfg):
            alone[0].extend(emitted.values())
        assert batch[r] == alone[0], r
        assert len(batch[r]) < 16 if stopped[r] else len(batch[r]) == 16


def test_batch_order_groups_rows_by_adapter_longest_first():
    from stylealign.decoding import batch_order

    convs = [[{"role": "user", "content": "x" * n}] for n in (5, 50, 20, 40, 10, 30)]
    adapters = ["b", None, "a", "a", None, "b"]
    assert batch_order(convs, adapters) == [1, 4, 3, 2, 5, 0]


def test_base_rows_beside_one_adapter_take_a_per_row_scale_not_peft_routing(gen, monkeypatch):
    """A batch of base rows and one adapter's runs the adapter alone, scaled 0 on base rows: the same logits as
    PEFT's per-row routing (fp32 tolerance), PEFT's routing never entered, each layer's scaling restored."""
    enc = gen.encode(CONVS * 2)
    adapters = [None, "style", "style", None, "style", None]
    layer = gen._lora_layers()[0]
    with torch.no_grad(), gen._routing(adapters):
        assert torch.is_tensor(layer.scaling["style"]) and layer.scaling["style"].flatten().tolist() == [
            0.0 if a is None else gen._scalings["style"][layer]["style"] for a in adapters]
        scaled = gen.model(**enc).logits
    assert layer.scaling["style"] == gen._scalings["style"][layer]["style"]  # restored
    with torch.no_grad(), gen.model.base_model._enable_peft_forward_hooks(adapter_names=[a or "__base__" for a in adapters]):
        routed = gen.model(**enc).logits
    tol = _tolerance("fp32", routed)
    assert float((scaled - routed).abs().max()) <= tol
    assert float((scaled[2] - scaled[5]).abs().max()) > 100 * tol  # one conversation, adapter vs base: they differ

    routed_rows, real = [], gen.model.base_model._enable_peft_forward_hooks
    monkeypatch.setattr(gen.model.base_model, "_enable_peft_forward_hooks",
                        lambda *a, **kw: (routed_rows.append(kw.get("adapter_names")), real(*a, **kw))[1])
    gen.generate(CONVS, [None, "style", None], GenerationConfig(max_new_tokens=4, do_sample=False), batch_size=3)
    assert routed_rows and not any(routed_rows)  # PeftModel's forward enters it, never with per-row names


def test_two_adapters_in_one_batch_keep_peft_routing(tiny_model_dir, adapter_dir, monkeypatch):
    g = Generator(base=str(tiny_model_dir), quant="none", dtype="fp32")
    g.add_adapter("style", str(adapter_dir))
    g.add_adapter("again", str(adapter_dir))
    routed_rows, real = [], g.model.base_model._enable_peft_forward_hooks
    monkeypatch.setattr(g.model.base_model, "_enable_peft_forward_hooks",
                        lambda *a, **kw: (routed_rows.append(kw.get("adapter_names")), real(*a, **kw))[1])
    compared, _ = _compare_rows(g, [None, "style", "again", "again", None, "style"], monkeypatch, "fp32")
    assert compared > 6
    assert any(names and sorted(set(names)) == ["__base__", "again", "style"] for names in routed_rows)
