"""The arena over the real generation layer: a tiny random Llama (real SmolLM2 tokenizer) with a
random LoRA adapter. Strength 0 must reproduce the baseline pane exactly and strength 1 the adapter's
own output, all from one model in memory without reloading."""

import json

import pytest

from stylealign import generate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, LlamaConfig

    from stylealign import models

    root = tmp_path_factory.mktemp("tiny")
    tokenizer = models.load_tokenizer(models.resolve_base("smollm2-135m"))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(root / "base")
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"],
                      init_lora_weights=False)  # random A and B: the adapter really changes the output
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(root / "base"), lora)
    run = root / "style"
    peft_model.save_pretrained(run / "adapter")
    (run / "manifest.json").write_text(json.dumps({"persona": {"name": "t", "system_prompt": "Be terse."},
                                                   "base_model": str(root / "base")}))
    model = AutoModelForCausalLM.from_pretrained(root / "base", dtype=torch.float32)
    return model, tokenizer, run


@pytest.fixture(scope="module")
def service(tiny, tmp_path_factory):
    from stylealign.arena.service import ArenaService

    model, tokenizer, run = tiny
    gen = generate.Generator(model=model, tokenizer=tokenizer)
    return ArenaService.from_runs([run], tmp_path_factory.mktemp("votes") / "v.sqlite", generator=gen)


def final(service, strength: float, message: str = "Should I learn Rust?") -> dict:
    from stylealign.arena.settings import Settings

    out = None
    for out in service.side_by_side(None, message, "style", Settings(strength=strength, max_new_tokens=16, seed=3)):
        pass
    assert out["status"] == "Done.", out["status"]
    return out


def pair(service, message: str = "Should I learn Rust?") -> list[str]:
    """Return (baseline, adapter) answers from one batch of the two, the panes' batch shape: a row's text is
    reproducible within a batch shape, not across shapes (docs/CONTRACTS.md, mixed-adapter batches)."""
    from stylealign.arena.settings import Settings

    config = Settings(max_new_tokens=16, seed=3).generation_config()
    conv = [{"role": "user", "content": message}]
    return service.generator.generate([conv, conv], [None, "style"], config)


def test_strength_zero_is_the_baseline_and_one_is_the_adapter(service):
    base, adapter = pair(service)
    assert base and adapter and base != adapter

    zero = final(service, 0.0)
    assert zero["left"][-1]["content"] == zero["right"][-1]["content"] == base

    one = final(service, 1.0)
    assert one["left"][-1]["content"] == base
    assert one["right"][-1]["content"] == adapter

    louder = final(service, 2.0)
    assert louder["right"][-1]["content"] != adapter and louder["left"][-1]["content"] == base
    assert final(service, 1.0)["right"][-1]["content"] == adapter  # scaling restored after each call


def test_panes_stream_and_battles_vote_on_the_real_generator(service):
    from stylealign.arena.settings import Settings

    updates = list(service.side_by_side(None, "hi", "style", Settings(max_new_tokens=12)))
    assert len(updates) > 2
    for _ in service.battle_turn("s", "Tabs or spaces?", Settings(max_new_tokens=12)):
        pass
    assert service.vote("s", "A")["ok"] and len(service.store) == 1
