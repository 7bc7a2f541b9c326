"""The memory path: bf16 LoRA arithmetic on a bf16 CPU (no fp32 copies of LoRA inputs kept for backward),
the per-phase timer/RSS log of the main job, and the GPU bench script on the tiny shape (on a CPU)."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from stylealign.config import load_recipe
from stylealign.personas import load_persona


def _sft_trainer(tiny_model_dir, small_persona, overrides, out):
    from stylealign import models
    from stylealign.train import load_stage_data, sft_trainer

    recipe = load_recipe(None, overrides)
    torch.manual_seed(0)
    model = models.load_model(str(tiny_model_dir), quant="none", dtype=recipe.dtype)
    tok = models.load_tokenizer(str(tiny_model_dir))
    return sft_trainer(model, tok, load_stage_data(load_persona(small_persona), "sft", recipe, tok), recipe, out)


def _saved_fp32_bytes(trainer, batch) -> tuple[int, torch.Tensor, dict]:
    """Return (bytes of the fp32 activations autograd saves in one forward under bf16 CPU autocast, leaving out the
    LM head's vocabulary-wide logits; the loss; the LoRA gradients)."""
    saved: dict[int, int] = {}
    vocab = trainer.model.get_output_embeddings().weight.shape[0]

    def pack(t):
        if t.dtype == torch.float32 and t.dim() >= 2 and t.shape[-1] != vocab:
            saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), torch.autocast("cpu", dtype=torch.bfloat16):
        out = trainer.model(**batch, fused_lm_head=True)
    out.loss.backward()
    grads = {n: p.grad.float().clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
    return sum(saved.values()), out.loss.detach().float(), grads


def test_bf16_cpu_lora_keeps_no_fp32_copies_of_its_inputs(tiny_model_dir, small_persona, tiny_recipe_overrides, tmp_path,
                                                          monkeypatch):
    """With bf16 compute on a CPU, `lora_compute: auto` feeds each LoRA layer its bf16 input under autocast: autograd
    keeps far fewer fp32 bytes than PEFT's fp32 path, with the same loss and gradients within bf16 tolerance."""
    from stylealign import models

    monkeypatch.setattr(models, "cpu_has_bf16", lambda: True)  # the test must not depend on this CPU's flags
    results = {}
    for mode in ("auto", "fp32"):
        overrides = {**tiny_recipe_overrides, "dtype": "bf16", "lora_compute": mode, "sft.group_by_length": False}
        trainer = _sft_trainer(tiny_model_dir, small_persona, overrides, tmp_path / mode)
        assert trainer.stylealign_lora_compute == ("bf16 autocast" if mode == "auto" else "fp32")
        assert trainer.args.bf16 == (mode == "auto")  # autocast only where the LoRA inputs stay bf16
        torch.manual_seed(0)
        batch = next(iter(trainer.get_train_dataloader()))
        results[mode] = _saved_fp32_bytes(trainer, batch)
    (auto_bytes, auto_loss, auto_grads), (fp32_bytes, fp32_loss, fp32_grads) = results["auto"], results["fp32"]
    assert auto_bytes < 0.7 * fp32_bytes, (auto_bytes, fp32_bytes)
    assert torch.allclose(auto_loss, fp32_loss, rtol=2e-2), (auto_loss, fp32_loss)
    assert auto_grads.keys() == fp32_grads.keys() and auto_grads
    for name, g in auto_grads.items():  # LoRA B starts at 0: compare the nonzero gradients by direction
        ref = fp32_grads[name]
        if ref.norm() > 0:
            assert torch.nn.functional.cosine_similarity(g.flatten(), ref.flatten(), dim=0) > 0.98, name


def test_bf16_cpu_lora_trains_sft_then_dpo(tiny_model_dir, small_persona, tiny_recipe_overrides, tmp_path, monkeypatch):
    """SFT, then DPO with TRL's frozen "ref" copy, both run end to end on the bf16 CPU path, and the adapter
    weights and their optimizer state stay fp32."""
    from stylealign import models
    from stylealign.train import train_run

    monkeypatch.setattr(models, "cpu_has_bf16", lambda: True)
    recipe = load_recipe(None, {**tiny_recipe_overrides, "dtype": "bf16", "select.enabled": False})
    run = train_run(load_persona(small_persona), recipe, tmp_path / "run")
    manifest = json.loads((run / "manifest.json").read_text())
    for stage in ("sft", "dpo"):
        assert manifest["stages"][stage]["lora_compute"] == "bf16 autocast"
        assert manifest["stages"][stage]["train_loss"] == pytest.approx(manifest["stages"][stage]["train_loss"])  # finite
    from safetensors.torch import load_file

    weights = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    assert weights and all(w.dtype == torch.float32 and torch.isfinite(w).all() for w in weights.values())


def test_phase_log_nests_and_keeps_each_peak():
    """A nested phase's peak counts in its parent's; each record has wall, CPU time, peak and end RSS."""
    import mmap

    from stylealign.phases import PhaseLog

    log = PhaseLog()
    size = 64 * 2**20
    with log.phase("outer"):
        with log.phase("inner"):
            # 64 MiB straight from the OS and back (an anonymous map), so the peak does not depend on whether
            # malloc reuses heap the earlier tests of this process freed but kept
            buf = mmap.mmap(-1, size)
            for i in range(0, size, mmap.PAGESIZE):
                buf[i] = 1  # touched: resident
            buf.close()
        with log.phase("after"):
            pass
    recs = {r["name"]: r for r in log.records()}
    assert [r["name"] for r in log.records()] == ["outer", "inner", "after"]
    assert recs["inner"]["depth"] == 1 and recs["outer"]["depth"] == 0
    assert recs["outer"]["peak_rss_mb"] >= recs["inner"]["peak_rss_mb"]
    if recs["inner"]["peak_kind"] == "phase VmHWM":  # Linux: the window really resets
        assert recs["inner"]["peak_rss_mb"] >= recs["inner"]["rss_end_mb"] + 48
        assert recs["after"]["peak_rss_mb"] < recs["inner"]["peak_rss_mb"] - 32
    for r in recs.values():
        assert r["wall_s"] >= 0 and r["cpu_s"] >= 0 and r["rss_end_mb"] > 0
    summary = log.summary()
    # resetting VmHWM resets ru_maxrss too: the job's peak is the largest window's, not the last window's
    assert summary["peak_rss_mb"] >= recs["inner"]["peak_rss_mb"]
    assert summary["peak_rss_mb"] > 0 and [p["name"] for p in summary["phases"]] == ["outer", "inner", "after"]
    assert "  inner" in log.table()  # nested phases are indented


def _gpu_bench():
    from stylealign.commands.bench import BENCHMARKS

    sys.path.insert(0, str(BENCHMARKS))
    import gpu_bench

    return gpu_bench


def test_gpu_bench_targets_arithmetic():
    gb = _gpu_bench()
    arm = lambda kind, change, tps, mb: {"arm": kind, "kind": kind, "stage": "sft", "change": change,  # noqa: E731
                                         "summary": {"tokens_per_s": tps, "peak_memory_mb": mb}}
    report = {"arms": [arm("ref", {}, 100.0, 20 * 1024), arm("ref", {"use_liger_kernel": True}, 150.0, 1024),
                       arm("kit", {}, 200.0, 9 * 1024), arm("kit", {"liger": True}, 500.0, 1024)]}
    got = {t["key"]: t for t in gb.targets(report)}
    assert got["gpu_sft_speed"]["value"] == 2.0 and got["gpu_sft_speed"]["pass"] is True  # vs the plain defaults
    assert got["gpu_sft_memory"]["value"] == 9.0 and got["gpu_sft_memory"]["pass"] is True
    report["arms"][2]["summary"]["peak_memory_mb"] = 11 * 1024
    assert {t["key"]: t["pass"] for t in gb.targets(report)}["gpu_sft_memory"] is False
    assert gb.targets({"arms": []})[0]["pass"] is None


def test_gpu_bench_tiny_runs_on_a_cpu(tmp_path, embedded_dir):
    """The GPU script's --tiny shape runs here: plain TRL QLoRA and the kit, each in its own process; features
    that need CUDA or a package that is not installed are skipped with a note, never downloaded."""
    gb = _gpu_bench()
    report = gb.run(["--tiny", "--only", "sft", "--arms", "defaults,as shipped", "--out", str(tmp_path / "out")])
    arms = {a["arm"]: a for a in report["arms"]}
    assert set(arms) == {"plain TRL QLoRA (defaults)", "kit: GPU recipe as shipped"}
    for a in arms.values():
        assert a["error"] is None, a["log_tail"]
        assert a["summary"]["tokens_per_s"] > 0 and a["summary"]["peak_memory_mb"] > 0
    assert report["quant"] == "nf4" and report["seq_len"] == 64
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| SFT | plain TRL QLoRA (defaults) |" in md and "vs plain TRL" in md
    assert gb.needs("no_such_package_for_stylealign").startswith("skipped: the no_such_package_for_stylealign package")
    if not torch.cuda.is_available():
        assert gb.needs(None, cuda=True) == "skipped: needs a CUDA GPU"
