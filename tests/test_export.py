"""Export on the tiny model (fast): merged == PEFT, the LoRA GGUF holds PEFT's A/B in llama.cpp's layout,
the Modelfile's Go template writes what the HF chat template writes, clear errors."""

import json
import re

import numpy as np
import pytest

from stylealign.export.check import CheckConfig
from stylealign.export.lora_gguf import llama_permute, lora_pairs, read_gguf_fields, read_gguf_tensors, write_lora_gguf
from stylealign.export.modelfile import chat_format, expand, go_template, modelfile, stop_tokens
from stylealign.export.run import ExportError, export_run

PROMPTS = [{"messages": [{"role": "user", "content": "Is Rust worth learning?"}], "language": "en"},
           {"messages": [{"role": "user", "content": "Should I rewrite it in Go?"}], "language": "en"}]


@pytest.fixture(scope="module")
def tiny_run(tiny_model_dir, tmp_path_factory):
    """Return a run folder with a random (non-zero) LoRA on every linear layer of the tiny Llama."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    run = tmp_path_factory.mktemp("runs") / "tiny-run"
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    with torch.no_grad():
        for name, p in peft.named_parameters():
            if "lora_B" in name:
                p.mul_(20.0)  # a LoRA that moves the greedy tokens
    peft.save_pretrained(run / "adapter", safe_serialization=True)
    (run / "manifest.json").write_text(json.dumps({"persona": "sharp-candid", "system_prompt": "Be sharp.",
                                                   "base_model": {"name": str(tiny_model_dir)}}))
    return run


def test_merged_export_answers_like_the_adapter(tiny_run, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    out = tmp_path / "exp"
    report = export_run(tiny_run, out, to="merged", check_config=CheckConfig(prompts=PROMPTS, horizon=8))
    merged = report["comparisons"]["merged"]
    assert report["passed"] and merged["agreement"] == 1.0 and merged["exact_answers"] == 2
    assert merged["max_logit_diff"] < 1e-3 and merged["kl_mean"] < 1e-6  # fp32: rounding only
    assert not (tmp_path / "exp.partial").exists() and (out / "report.md").exists() and (out / "COMMANDS.md").exists()
    model = AutoModelForCausalLM.from_pretrained(out / "merged", dtype=torch.float32)  # plain transformers loads it
    assert not any("lora" in n for n, _ in model.named_parameters())
    assert (out / "merged" / "chat_template.jinja").exists() or "chat_template" in (out / "merged" / "tokenizer_config.json").read_text()
    assert "| merged |" in (out / "report.md").read_text()


def test_an_adapter_that_changes_nothing_fails_the_style_gate(tiny_run, tmp_path):
    from stylealign.export.check_run import gates

    results = {"merged": {"agreement": 1.0, "style_retained": 0.1}}
    failed = [g["check"] for g in gates(results, CheckConfig()) if not g["passed"]]
    assert failed == ["merged: share of the adapter's style shift kept"]


@pytest.mark.parametrize("outtype,tol", [("f32", 0.0), ("f16", 2e-3), ("bf16", 1e-2), ("q8_0", 2e-2)])
def test_lora_gguf_holds_the_peft_matrices_in_llama_cpp_layout(tiny_run, tiny_model_dir, tmp_path, outtype, tol):
    config = json.loads((tiny_model_dir / "config.json").read_text())
    path = write_lora_gguf(tiny_run / "adapter", config, tmp_path / "a.gguf", outtype)
    fields = read_gguf_fields(path)
    assert (fields["general.type"], fields["adapter.type"], fields["general.architecture"]) == ("adapter", "lora", "llama")
    assert fields["adapter.lora.alpha"] == 8.0
    tensors = read_gguf_tensors(path)
    cfg, pairs = lora_pairs(tiny_run / "adapter")
    assert len(tensors) == 2 * len(pairs) == 2 * 7 * config["num_hidden_layers"]
    a, b = pairs["model.layers.1.self_attn.q_proj"]
    np.testing.assert_allclose(tensors["blk.1.attn_q.weight.lora_a"], a, atol=tol * np.abs(a).max())
    np.testing.assert_allclose(tensors["blk.1.attn_q.weight.lora_b"], llama_permute(b, config["num_attention_heads"]),
                               atol=tol * np.abs(b).max())
    a, b = pairs["model.layers.0.mlp.down_proj"]
    assert tensors["blk.0.ffn_down.weight.lora_a"].shape == a.shape and tensors["blk.0.ffn_down.weight.lora_b"].shape == b.shape
    np.testing.assert_allclose(tensors["blk.0.ffn_down.weight.lora_b"], b, atol=tol * np.abs(b).max())
    _, kb = pairs["model.layers.0.self_attn.k_proj"]
    assert not np.allclose(tensors["blk.0.attn_k.weight.lora_b"], kb)  # rows permuted for llama.cpp's RoPE layout


def test_gguf_export_of_a_base_without_a_gguf_file_says_what_to_do(tiny_run, tmp_path):
    with pytest.raises(ExportError, match="--base FILE.gguf"):
        export_run(tiny_run, tmp_path / "exp", to="gguf", check=False)
    assert not (tmp_path / "exp").exists()


# ---- the Modelfile's Go template, rendered by a small interpreter of the subset it uses -----------------

def render_go(template: str, messages: list[dict]) -> str:
    """Render the Go text/template subset go_template emits: {{- trims, quoted strings, $m.Content,
    if / else if / end, range $i, $m := .Messages, and eq/ne/and/or/len/slice/index expressions."""
    parts = re.split(r"(\{\{-?.*?-?\}\})", template)
    for i, p in enumerate(parts):  # trim markers eat whitespace in the neighbouring template text
        if p.startswith("{{-") and i > 0:
            parts[i - 1] = parts[i - 1].rstrip()
        if p.endswith("-}}") and i + 1 < len(parts):
            parts[i + 1] = parts[i + 1].lstrip()
    nodes = [("text", p) if not p.startswith("{{") else ("act", p.strip("{}-").strip()) for p in parts]
    out, _ = _run(nodes, 0, {"Messages": messages})
    return out


def _run(nodes, k, env, stop=("end",)):
    out = ""
    while k < len(nodes):
        kind, body = nodes[k]
        if kind == "text":
            out, k = out + body, k + 1
        elif body.startswith("range"):
            k, text = _range(nodes, k, env)
            out += text
        elif body.startswith("if "):
            k, text = _if(nodes, k, env)
            out += text
        elif body.split()[0] in stop or body.startswith("else"):
            return out, k
        else:
            out, k = out + str(_eval(body, env)), k + 1
    return out, k


def _skip(nodes, k):
    """Return the index of the else/end closing the block that starts after k."""
    depth = 0
    while True:
        k += 1
        body = nodes[k][1] if nodes[k][0] == "act" else ""
        if body.startswith(("if ", "range")):
            depth += 1
        elif body == "end" and depth:
            depth -= 1
        elif (body == "end" or body.startswith("else")) and not depth:
            return k


def _if(nodes, k, env):
    taken = False
    text = ""
    cond = nodes[k][1][3:]
    while True:
        if not taken and (cond is None or _eval(cond, env)):
            text, stop = _run(nodes, k + 1, env)
            taken = True
        stop = _skip(nodes, k)
        body = nodes[stop][1]
        if body == "end":
            return stop + 1, text
        cond = body[len("else if "):] if body.startswith("else if ") else None
        k = stop


def _range(nodes, k, env):
    end = _skip(nodes, k)
    text = ""
    for i, m in enumerate(env["Messages"]):
        piece, _ = _run(nodes, k + 1, {**env, "$i": i, "$m": m})
        text += piece
    return end + 1, text


def _eval(expr, env):
    tokens = re.findall(r'"(?:[^"\\]|\\.)*"|\(|\)|[^\s()]+', expr)
    value, rest = _expr(tokens, env)
    assert not rest, rest
    return value


def _expr(tokens, env):
    head, *rest = tokens
    funcs = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "and": lambda a, b: a and b,
             "or": lambda a, b: a or b, "len": len, "slice": lambda xs, i: xs[i:], "index": lambda xs, i: xs[i]}
    if head in funcs:
        n = 1 if head == "len" else 2
        args = []
        for _ in range(n):
            arg, rest = _atom(rest, env)
            args.append(arg)
        return funcs[head](*args), rest
    return _atom(tokens, env)


def _atom(tokens, env):
    head, *rest = tokens
    if head == "(":
        value, rest = _expr(rest, env)
        assert rest[0] == ")"
        rest = rest[1:]
        if rest and rest[0].startswith("."):  # (index .Messages 0).Role
            value, rest = value[rest[0][1:].lower()], rest[1:]
        return value, rest
    if head.startswith('"'):
        return json.loads(head), rest
    if head.isdigit():
        return int(head), rest
    if head in (".Messages", "$.Messages"):
        return env["Messages"], rest
    if head.startswith("$m."):
        return env["$m"][head[3:].lower()], rest
    return env[head], rest


def test_modelfile_template_writes_what_the_hf_chat_template_writes(embedded_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(embedded_dir)
    fmt = chat_format(tok)
    template = go_template(fmt)
    talks = [[{"role": "system", "content": "You are sharp.\nNo fluff."}, {"role": "user", "content": "Is Go fast?"},
              {"role": "assistant", "content": "Yes. It compiles to native code."},
              {"role": "user", "content": "Faster than {{Rust}}?"}],
             [{"role": "user", "content": "Hi"}]]  # no system turn: the template's own default system prompt
    for talk in talks:
        want = tok.apply_chat_template(talk, tokenize=False, add_generation_prompt=True)
        assert render_go(template, talk) == want == expand(fmt, talk)
    assert stop_tokens(tok, fmt) == ["<|im_end|>"]
    text = modelfile("../gguf/base.gguf", "../gguf/r.f16.gguf", template, "Be sharp.", ["<|im_end|>"], {"temperature": 0.7})
    assert text.splitlines()[:2] == ["FROM ../gguf/base.gguf", "ADAPTER ../gguf/r.f16.gguf"]
    assert 'SYSTEM """Be sharp."""' in text and 'PARAMETER stop "<|im_end|>"' in text


def test_style_retained_is_one_for_the_adapters_answers_and_zero_for_the_bases():
    from stylealign.export.check import style_retained

    adapter = ["No. Use Postgres; it is faster.", "Yes. Ship it today."]
    base = ["It may depend on many factors, and perhaps you could consider both options. I hope this helps!",
            "Great question! There are many things to consider, and it might be worth thinking about it."]
    langs = ["en", "en"]
    assert style_retained(adapter, adapter, base, langs) == pytest.approx(1.0)
    assert style_retained(base, adapter, base, langs) == pytest.approx(0.0)
    assert style_retained(adapter, base, base, langs) is None  # no shift to keep


def test_serve_strength_is_carried_in_a_scaled_copy_of_the_lora_gguf(tiny_run, tiny_model_dir, tmp_path):
    from stylealign.export.serve import scaled_lora, server_config

    config = json.loads((tiny_model_dir / "config.json").read_text())
    lora = write_lora_gguf(tiny_run / "adapter", config, tmp_path / "r.f16.gguf", "f16")
    (tmp_path / "s").mkdir()
    half = scaled_lora(lora, 0.5, tmp_path / "s")
    assert read_gguf_fields(half)["adapter.lora.alpha"] == 4.0 and read_gguf_fields(lora)["adapter.lora.alpha"] == 8.0
    same = read_gguf_tensors(lora)
    assert all(np.array_equal(v, same[k]) for k, v in read_gguf_tensors(half).items())  # only the alpha changes
    served = server_config(tmp_path / "base.gguf", half, "smollm2-135m", "run", "127.0.0.1", 8000, 1024)
    # llama-cpp-python's server settings forbid unknown keys (there is no lora_scale among them)
    assert [m.get("lora_path") for m in served["models"]] == [None, str(half)]
    assert all(set(m) <= {"model", "model_alias", "n_ctx", "verbose", "lora_path"} for m in served["models"])


def test_a_bf16_adapter_exports_to_gguf(tiny_run, tiny_model_dir, tmp_path):
    """Adapters trained with bf16 compute are saved in bf16, which numpy cannot read."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    bf16 = tmp_path / "adapter"
    shutil.copytree(tiny_run / "adapter", bf16)
    weights = load_file(str(bf16 / "adapter_model.safetensors"))
    save_file({k: v.to(torch.bfloat16) for k, v in weights.items()}, str(bf16 / "adapter_model.safetensors"))
    config = json.loads((tiny_model_dir / "config.json").read_text())
    tensors = read_gguf_tensors(write_lora_gguf(bf16, config, tmp_path / "a.gguf", "f32"))
    a = weights["base_model.model.model.layers.0.mlp.down_proj.lora_A.weight"]
    np.testing.assert_array_equal(tensors["blk.0.ffn_down.weight.lora_a"], a.to(torch.bfloat16).float().numpy())


def test_plain_llama_cpp_buffers_only_on_a_cpu_with_amx():
    from stylealign.export.llamacpp import cpu_has_amx

    assert cpu_has_amx("processor\t: 0\nflags\t\t: fpu avx512f amx_bf16 amx_tile amx_int8\n")
    assert not cpu_has_amx("processor\t: 0\nflags\t\t: fpu avx512f avx512_bf16\n")
