"""The embedded model's adapter out into llama.cpp: `--base FILE.gguf` trains and reloads, `export --to all`
passes its check (llama.cpp + LoRA agrees with PEFT, differs from llama.cpp without it), and `stylealign eval`
through `stylealign serve`'s OpenAI-compatible server gives llama.cpp's own greedy answers.

llama-cpp-python is part of the test setup, so these fail (never skip) when it is missing."""

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from stylealign.export.check import CheckConfig

pytestmark = [pytest.mark.llama_cpp, pytest.mark.slow]

PROMPTS = [{"messages": [{"role": "user", "content": c}], "language": "en"} for c in
           ("Should I learn Rust or Go first?", "Is it worth rewriting our app in a new framework?",
            "Do I need a degree to become a programmer?")]


SHIPPED = Path(__file__).resolve().parents[1] / "personas" / "sharp-candid"


@pytest.fixture(scope="module")
def short_persona(tmp_path_factory) -> Path:
    """Return the shipped persona cut to its 24 shortest English SFT rows (a training run of seconds per step)."""
    folder = tmp_path_factory.mktemp("persona") / "sharp-short"
    (folder / "data").mkdir(parents=True)
    text = (SHIPPED / "persona.yaml").read_text(encoding="utf-8").split("\ndata:")[0]
    (folder / "persona.yaml").write_text(text.replace("name: sharp-candid", "name: sharp-short")
                                         + "\ndata:\n  sft: [data/sft.jsonl]\n", encoding="utf-8")
    rows = [line for f in sorted(SHIPPED.glob("data/sft_en_*.jsonl"))
            for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    (folder / "data" / "sft.jsonl").write_text("\n".join(sorted(rows, key=len)[:24]) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def gguf_run(short_persona, tmp_path_factory):
    """Return a run trained a few SFT steps on the embedded model given as its GGUF file (`--base FILE.gguf`)."""
    from stylealign.config import load_recipe
    from stylealign.models import embedded_gguf
    from stylealign.personas import load_persona
    from stylealign.train import train_run

    recipe = load_recipe(None, {"base": str(embedded_gguf("smollm2-135m")), "quant": "none", "dtype": "fp32",
                                "languages": "en", "max_length": 384, "eval_fraction": 0.0, "sft.max_steps": 8,
                                "sft.batch_size": 4, "sft.learning_rate": 1e-3, "sft.save_steps": 100, "lora.r": 8,
                                "lora.alpha": 16, "select.enabled": False})
    return train_run(load_persona(str(short_persona)), recipe, tmp_path_factory.mktemp("runs") / "gguf-run",
                     stages=("sft",))


def test_a_gguf_base_trains_and_reloads(gguf_run):
    from stylealign.generate import GenerationConfig, generator_for_runs
    from stylealign.models import embedded_gguf, ensure_embedded, weights_hash

    base = json.loads((gguf_run / "manifest.json").read_text())["base_model"]
    assert base["name"] == str(embedded_gguf("smollm2-135m").resolve()) and "gguf-" in base["path"]
    assert base["sha256"] == weights_hash(str(ensure_embedded("smollm2-135m")))  # same file, same weights
    gen = generator_for_runs([str(gguf_run)])  # the base comes back from the manifest's .gguf path
    cfg = GenerationConfig(max_new_tokens=12, do_sample=False, repetition_penalty=1.0)
    base_answer, adapter_answer = gen.generate([PROMPTS[0]["messages"]] * 2, [None, gen.adapter_names[0]], cfg)
    assert adapter_answer and adapter_answer != base_answer


def test_unsupported_gguf_is_one_clear_error(tmp_path):
    from stylealign.errors import UserError
    from stylealign.models import resolve_base

    bad = tmp_path / "not-a-model.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(UserError, match="cannot convert this GGUF"):
        resolve_base(str(bad))


@pytest.fixture(scope="module")
def exported(gguf_run, tmp_path_factory):
    from stylealign.export.run import export_run

    out = tmp_path_factory.mktemp("export") / "exp"
    report = export_run(gguf_run, out, to="all", check_config=CheckConfig(prompts=PROMPTS, horizon=24))
    return out, report


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory):
    """Return a suite file holding PROMPTS (what `--suite` takes)."""
    path = tmp_path_factory.mktemp("suite") / "suite.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i}", "category": "tech", **p}) + "\n" for i, p in enumerate(PROMPTS)))
    return path


def test_export_all_passes_its_check_with_llama_cpp(exported):
    out, report = exported
    comps = report["comparisons"]
    print(json.dumps({k: {m: v for m, v in c.items() if m != "answers"} for k, c in comps.items()}, indent=1))
    assert report["passed"], report["gates"]
    merged = comps["merged"]  # fp32 merge: the PEFT adapter's greedy answers, up to float rounding
    assert merged["exact_answers"] == merged["answers"] == len(PROMPTS) and merged["max_logit_diff"] < 1e-2
    lora, ceiling, vs_base = comps["gguf_lora"], comps["gguf_base_ceiling"], comps["gguf_lora_vs_hf_base"]
    assert lora["agreement"] >= min(0.9, ceiling["agreement"] - 0.05)  # the stated gate, measured ceiling
    # Clearly the adapter, not the base. Measured on AMD EPYC (AVX-512 BF16): top-1 agreement 0.94 with PEFT
    # vs 0.79 with the HF base (51 / 72 tokens, so coarse), per-token KL 0.003 vs 0.18 (55x): the KL is the
    # sharp test, the agreement gap keeps a margin below its measured 0.15.
    assert lora["agreement"] - vs_base["agreement"] >= 0.10
    assert lora["kl_mean"] < vs_base["kl_mean"] / 10
    examples = report["examples"]  # llama.cpp with the LoRA answers differently from llama.cpp without it
    assert sum(e["gguf_lora"] != e["gguf_base"] for e in examples) == len(examples) == len(PROMPTS)
    for f in ("merged/model.safetensors", "gguf/base.gguf", "ollama/Modelfile", "report.md", "COMMANDS.md"):
        assert (out / f).exists(), f
    assert "--lora-scaled" in (out / "COMMANDS.md").read_text() and "ollama create" in (out / "COMMANDS.md").read_text()


def test_the_embedded_lora_gguf_holds_the_peft_matrices(gguf_run, exported):
    from stylealign.export.lora_gguf import llama_permute, lora_pairs, read_gguf_fields, read_gguf_tensors
    from stylealign.models import resolve_base

    out, _ = exported
    path = out / "gguf" / f"{gguf_run.name}.f16.gguf"
    config = json.loads((Path(resolve_base("smollm2-135m").path) / "config.json").read_text())
    tensors, (cfg, pairs) = read_gguf_tensors(path), lora_pairs(gguf_run / "adapter")
    assert read_gguf_fields(path)["adapter.lora.alpha"] == cfg["lora_alpha"] == 16
    assert len(tensors) == 2 * len(pairs) == 2 * 7 * config["num_hidden_layers"]
    for module, gguf_name, heads in (("model.layers.3.self_attn.q_proj", "blk.3.attn_q", config["num_attention_heads"]),
                                     ("model.layers.3.self_attn.k_proj", "blk.3.attn_k", config["num_key_value_heads"]),
                                     ("model.layers.7.mlp.down_proj", "blk.7.ffn_down", None)):
        a, b = pairs[module]
        b = llama_permute(b, heads) if heads else b
        np.testing.assert_allclose(tensors[gguf_name + ".weight.lora_a"], a, atol=2e-3 * np.abs(a).max())  # f16
        np.testing.assert_allclose(tensors[gguf_name + ".weight.lora_b"], b, atol=2e-3 * np.abs(b).max())


def test_export_cli_exits_nonzero_when_the_lora_gguf_lost_the_adapter(gguf_run, suite_file, tmp_path, monkeypatch):
    """A LoRA GGUF with its B matrices zeroed is the base in disguise: the check must catch it (exit 1)."""
    from stylealign.cli import main
    from stylealign.export import lora_gguf

    real = lora_gguf.gguf_tensors
    monkeypatch.setattr(lora_gguf, "gguf_tensors", lambda *a, **k: {
        name: t * 0 if name.endswith(".lora_b") else t for name, t in real(*a, **k).items()})
    rc = main(["export", str(gguf_run), "--to", "gguf", "--out", str(tmp_path / "e"), "--horizon", "12",
               "--suite", str(suite_file)])
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert rc == 1 and report["passed"] is False
    failed = {g["check"] for g in report["gates"] if not g["passed"]}
    assert "llama.cpp + LoRA agrees more with the adapter than with the base" in failed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        assert proc.poll() is None, "the server exited"
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"no server at {url} after {seconds} s")


def test_eval_through_stylealign_serve_matches_llama_cpp_in_process(gguf_run, exported, suite_file, tmp_path):
    from llama_cpp import Llama
    from openai import OpenAI

    from stylealign.cli import main
    from stylealign.export.llamacpp import plain_buffers_on_amx

    out, _ = exported
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "stylealign", "serve", str(gguf_run), "--export", str(out),
                             "--port", str(port), "--n-ctx", "1024"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait(f"http://127.0.0.1:{port}/v1/models", proc)
        base = json.loads((gguf_run / "manifest.json").read_text())["base_model"]["name"]
        client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="none")  # the official client speaks to it
        chat = {name: client.chat.completions.create(model=name, messages=PROMPTS[0]["messages"], max_tokens=16,
                                                     temperature=0, extra_body={"repeat_penalty": 1.0}
                                                     ).choices[0].message.content.strip() for name in (base, gguf_run.name)}
        assert chat[gguf_run.name] and chat[gguf_run.name] != chat[base]  # the adapter is on under the run's name
        rc = main(["eval", "--adapter", str(gguf_run), "--backend", f"openai:http://127.0.0.1:{port}/v1#{base}?concurrency=1",
                   "--suite", str(suite_file), "--limit", "2", "--greedy", "--repetition-penalty", "1.0", "--max-new-tokens", "16",
                   "--no-classifier", "--no-plots", "--quiet", "--no-probe", "--n-boot", "20", "--out", str(tmp_path / "ev")])
        assert rc == 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    rows = [json.loads(line) for line in (tmp_path / "ev" / "answers.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for lora, label, served in ((None, "baseline", base), (out / "gguf" / f"{gguf_run.name}.f16.gguf", gguf_run.name,
                                                           gguf_run.name)):
        plain_buffers_on_amx()
        llm = Llama(model_path=str(out / "gguf" / "base.gguf"), n_ctx=1024, verbose=False, seed=0,
                    **({"lora_path": str(lora)} if lora else {}))
        assert chat[served] == _ask(llm, PROMPTS[0]["messages"])
        for row in rows:
            assert row["answers"][label] == _ask(llm, row["messages"])


def _ask(llm, messages, max_tokens: int = 16) -> str:
    """Return llama.cpp's greedy chat answer in-process, with the sampling the backend sends."""
    reply = llm.create_chat_completion(messages=messages, max_tokens=max_tokens, temperature=0.0, top_p=1.0,
                                       repeat_penalty=1.0, seed=0)
    return reply["choices"][0]["message"]["content"].strip()
