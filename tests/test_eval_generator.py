"""run_eval on the real Generator: a tiny random model (fast) and the embedded SmolLM2-135M via the CLI (slow)."""

from __future__ import annotations

import json

import pytest
import torch

from stylealign.evaluate import EvalConfig, run_eval
from stylealign.fakes import HashEmbedder

SUITE = [
    {"id": "en-1", "category": "tech", "language": "en", "adversarial": False, "kind": "open",
     "messages": [{"role": "user", "content": "Is SQLite fine for a 30-user internal tool?"}]},
    {"id": "zh-1", "category": "money", "language": "zh", "adversarial": False, "kind": "open",
     "messages": [{"role": "user", "content": "存款利率0.5%，车贷7.9%，要不要提前还？"}]},
    {"id": "k-1", "category": "science", "language": "en", "adversarial": False, "kind": "known_answer", "expected": "yes",
     "messages": [{"role": "user", "content": "Does water boil at a lower temperature on Everest?"}]},
]
CORPUS = [{"id": "c1", "language": "en", "text": "Bread rises because yeast releases carbon dioxide."},
          {"id": "c2", "language": "zh", "text": "面包发起来，是因为酵母产生了二氧化碳。"}]


def _random_adapter(base_dir, out, seed=1):
    """Save a LoRA adapter with random (non-zero) A and B for the model in `base_dir`; return `out`."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    lora = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj", "down_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(out)
    return out


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_run_eval_with_the_real_generator_on_a_tiny_model(tmp_path, tiny_model_dir):
    from stylealign.generate import GenerationConfig, Generator

    gen = Generator(base=str(tiny_model_dir), quant="none", dtype="fp32")
    gen.add_adapter("style", str(_random_adapter(tiny_model_dir, tmp_path / "adapter")))
    corpus = _write_jsonl(tmp_path / "corpus.jsonl", CORPUS)
    config = EvalConfig(generation=GenerationConfig(max_new_tokens=8, seed=1), strengths=(0.0, 1.0), n_boot=100,
                        progress=False, classifier=False, corpus=str(corpus), batch_size=4)
    report = run_eval(gen, ["style"], [SUITE], config, embedder=HashEmbedder(), out=tmp_path / "eval")
    ret = report["retention"]["variants"]
    assert ret["style@0"]["kl_per_token"] == pytest.approx(0.0, abs=1e-4)  # strength 0 is the base model
    assert ret["style@0"]["ppl_ratio"] == pytest.approx(1.0, abs=1e-3)
    assert ret["style@1"]["kl_per_token"] > 0.001 and ret["style@1"]["ppl_ratio"] != pytest.approx(1.0, abs=1e-3)
    answers = [json.loads(x) for x in (tmp_path / "eval" / "answers.jsonl").read_text().splitlines()]
    # Same seed, same model, but not the same batch: evaluation batches rows by model, so baseline and strength-0
    # rows run in other batch shapes, whose kernels round differently (docs/CONTRACTS.md: no bit equality across
    # batch shapes or CPU families). A sampled row may part from its twin after a near tie; it must not start apart,
    # and most of its words must agree. The exact check that strength 0 is the base is the KL above.
    for a in answers:
        ours, base = a["answers"]["style@0"].split(), a["answers"]["baseline"].split()
        assert ours[:1] == base[:1], (ours, base)
    assert _word_agreement(answers, "style@0") >= 0.6
    assert (tmp_path / "eval" / "report.md").exists()


def _word_agreement(answers, variant) -> float:
    """Share of word positions where `variant`'s answers equal the baseline's (over the longer answer)."""
    same = total = 0
    for a in answers:
        ours, base = a["answers"][variant].split(), a["answers"]["baseline"].split()
        same += sum(x == y for x, y in zip(ours, base))
        total += max(len(ours), len(base), 1)
    return same / total


@pytest.mark.slow
def test_cli_eval_end_to_end_on_the_embedded_model(tmp_path, embedded_dir, monkeypatch, capsys):
    from stylealign.cli import main

    run = tmp_path / "runs" / "tiny-style"
    _random_adapter(embedded_dir, run / "adapter")
    (run / "manifest.json").write_text(json.dumps({"persona": "sharp-candid", "bake_system_prompt": False,
                                                   "base_model": {"name": "smollm2-135m", "quant": "none"}}))
    suite = _write_jsonl(tmp_path / "suite.jsonl", SUITE)
    corpus = _write_jsonl(tmp_path / "corpus.jsonl", CORPUS)
    args = ["eval", "--adapter", str(run), "--suite", str(suite), "--corpus", str(corpus), "--max-new-tokens", "24",
            "--probe-tokens", "24", "--n-boot", "200", "--quiet", "--kl-prompts", "3"]
    assert main(args + ["--fail-under", "relevance=-1"]) == 0
    out = capsys.readouterr().out
    assert "tiny-style" in out and "hedge_rate" in out
    report = json.loads((run / "eval" / "report.json").read_text())
    assert report["base_model"] == "smollm2-135m" and report["gate"]["passed"]
    assert report["classifier"]["status"] in ("ok", "skipped") and report["retention"]["status"] == "ok"
    gated = ["--out", str(tmp_path / "gated"), "--no-retention", "--no-classifier", "--no-plots"]
    assert main(args + gated + ["--fail-under", "relevance=1.01"]) == 1


def test_hf_judge_runs_a_local_chat_model(tiny_model_dir):
    # plumbing only: a random tiny model is no judge, but the call path (template, greedy decode, parse) is real
    from stylealign.evaluate.judge import HFJudge, judge_pair, make_judge

    judge = make_judge(f"hf:{tiny_model_dir}")
    assert isinstance(judge, HFJudge)
    assert judge("Is it worth it?", "No.", "Maybe.") in ("A", "B", "tie")
    assert judge_pair(judge, "q", "a", "b")["outcome"] in ("adapter", "baseline", "tie")
