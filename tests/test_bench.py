"""Bench: the arithmetic (FLOPs per token, utilisation, medians, ratios, targets) and an end-to-end
`stylealign bench --quick` on the tiny random Llama. No timing assertions: timings are the output."""

from __future__ import annotations

import json

import pytest

from stylealign.commands.bench import harness

arith = harness().arith  # benchmarks/bench: the harness is not part of the installed package

TINY = dict(num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=1000)


def test_flops_per_token_by_hand_on_a_known_config():
    dims = arith.Dims.from_config(TINY)
    assert (dims.head_dim, dims.kv_heads) == (16, 2)
    # per layer: q 64x64, k 64x32, v 64x32, o 64x64, gate/up 64x128, down 128x64
    n = 2 * (4096 + 2048 + 2048 + 4096 + 3 * 8192)
    lora = 2 * 4 * (128 + 96 + 96 + 128 + 192 + 192 + 192)
    head = 1000 * 64
    attention = 4 * 2 * 4 * 16 * 10.0  # context 10
    assert arith.linear_params(dims) == n == 73728
    assert arith.lora_params(dims, 4) == lora == 8192
    assert arith.flops_per_token(dims, "forward", r=4, context=10) == 2 * n + 2 * lora + 2 * head + attention
    assert arith.flops_per_token(dims, "train", r=4, context=10) == 4 * n + 6 * lora + 4 * head + 3 * attention == 615424
    assert arith.flops_per_token(dims, "dpo", r=4, context=10) == 615424 + 296960
    with pytest.raises(ValueError):
        arith.flops_per_token(dims, "inference")


def test_smollm2_shape_matches_the_published_parameter_count():
    dims = arith.Dims.from_config(arith.SHAPES["smollm2-135m"])
    total = arith.linear_params(dims) + arith.head_params(dims)  # tied embedding counted once
    assert arith.linear_params(dims) == 106_168_320
    assert 134e6 < total < 135e6
    # ~4N per token for LoRA training, plus LM head and attention
    assert 4 * 106e6 < arith.flops_per_token(dims, "train", 16, 128) < 6 * 106e6


def test_mean_context_utilisation_median_ratio_rate():
    assert arith.mean_context([3]) == 2.0  # positions attend to 1, 2, 3
    assert arith.mean_context([1, 3]) == 1.75
    assert arith.mean_context([]) == 0.0
    assert arith.utilisation(100, 1e9, 200e9) == 0.5
    assert arith.utilisation(None, 1e9, 200e9) is None and arith.utilisation(100, 1e9, None) is None
    assert arith.median([3, 1, 2]) == 2 and arith.median([1, 2, 3, 4]) == 2.5
    assert arith.median([None, float("nan")]) is None
    assert arith.ratio(5, 2) == 2.5 and arith.ratio(1, 0) is None and arith.ratio(None, 1) is None
    assert arith.rate([10, 30, 20], [1, 1, 0]) == 20  # zero-time step skipped, median of 10 and 30


def test_targets_pass_fail_and_missing():
    values = {"sft_speed": 2.6, "sft_memory": 0.9, "dpo_speed": 2.5, "dpo_copies": 1, "eval_speed": None,
              "eval_decoding": 1.4, "arena_two_panes": 1.2, "utilisation": 0.31}
    got = {t["key"]: t["pass"] for t in arith.evaluate_targets(values)}
    assert got == {"sft_speed": True, "sft_memory": False, "dpo_speed": True, "dpo_copies": True,
                   "eval_speed": None, "eval_decoding": False, "arena_two_panes": True, "utilisation": None,
                   "main_wall": None,
                   "main_memory": None}
    main = {t["key"]: t["pass"] for t in arith.evaluate_targets({"main_wall": 601, "main_memory": 3072})}
    assert main["main_wall"] is False and main["main_memory"] is True
    assert {t["key"] for t in arith.evaluate_targets({})} == {t.key for t in arith.TARGETS}
    assert arith.check(">=", 2.4, 2.5) is False and arith.check("<=", 1.6, 1.6) is True


def test_shape_model_builds_a_random_llama_with_the_real_tokenizer(tmp_path, embedded_dir):
    shape_model = harness().shapes.shape_model
    folder = shape_model("tiny", root=tmp_path)
    config = json.loads((folder / "config.json").read_text())
    assert config["hidden_size"] == 64 and config["num_hidden_layers"] == 2
    assert (folder / "tokenizer.json").exists() and list(folder.glob("*.safetensors"))
    assert shape_model("tiny", root=tmp_path) == folder  # built once
    with pytest.raises(ValueError, match="unknown shape"):
        shape_model("llama-900b", root=tmp_path)


def test_quick_bench_runs_end_to_end_on_the_tiny_model(tiny_model_dir, tmp_path, capsys):
    from stylealign.cli import main

    out = tmp_path / "bench"
    code = main(["bench", "--quick", "--model", str(tiny_model_dir), "--quant", "none", "--out", str(out),
                 "--steps", "1", "--max-new-tokens", "4", "--no-profile"])
    assert code == 0, capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["mode"] == "quick" and report["machine"]["cores"] >= 1 and report["machine"]["torch"]
    for name, runs in report["arms"].items():
        assert runs and all("error" not in r for r in runs), (name, runs)
    for area in ("sft", "dpo"):
        for arm in ("kit", "ref"):
            part = report["summary"][area][arm]
            assert part["tokens_per_s"] > 0 and part["peak_memory_mb"] > 0 and part["flops_per_token"] > 0
    assert report["summary"]["dpo"]["kit"]["model_copies"] == 1
    assert report["summary"]["dpo"]["ref"]["model_copies"] == 2
    gen = report["summary"]["gen"]
    assert gen["batched"]["answers_per_s"] > 0 and gen["one_by_one"]["answers_per_s"] > 0
    assert gen["pane1"]["ttft_s"] > 0 and gen["pane2"]["steps"] >= 1
    assert report["peak_summary"]["bf16"]["median_gflops"] > 0
    assert [t["key"] for t in report["targets"]] == [t.key for t in arith.TARGETS]
    targets = {t["key"]: t for t in report["targets"]}  # measured targets are judged; the speed ones from the summary
    assert targets["sft_speed"]["value"] == pytest.approx(report["summary"]["sft"]["kit"]["tokens_per_s"]
                                                          / report["summary"]["sft"]["ref"]["tokens_per_s"], rel=1e-3)
    assert targets["sft_speed"]["pass"] is (targets["sft_speed"]["value"] >= 2.5)
    assert targets["dpo_copies"] == {**targets["dpo_copies"], "value": 1, "pass": True}
    assert targets["utilisation"]["pass"] is None  # reported, not judged
    md = (out / "report.md").read_text()
    assert "Machine:" in md and "| area | metric | kit | reference |" in md and "answers/s" in md
    assert md.strip() in capsys.readouterr().out.replace("\r", "")


def test_machine_names_the_cpu_and_its_matrix_extensions():
    host = harness().host
    m = host.machine()
    assert m["cpu"] and isinstance(m["matrix_extensions"], list)
    assert set(m["matrix_extensions"]) <= {label for _, label in host.MATRIX_FLAGS}
    line = host.cpu_line({"cpu": "Some CPU", "matrix_extensions": ["AVX2", "AVX-512", "AVX-512 BF16"],
                         "torch_cpu_capability": "AVX512"})
    assert line == "Some CPU (AVX-512 BF16, no AMX; flags: AVX2, AVX-512, AVX-512 BF16; torch CPU kernels AVX512)"
    assert "AMX, " in host.cpu_line({"cpu": "X", "matrix_extensions": ["AMX", "AMX BF16"]})


def test_main_job_area_summary_table_and_quick_recipe(tmp_path):
    """The main job's phases become a table with its totals; its targets hold for the shipped recipe only, and
    quick mode runs a cut-down recipe (written next to the report)."""
    import yaml

    bench = harness()
    run, cpu_recipe = bench.run, bench.settings.CPU_RECIPE
    phases = [{"name": "train (or reuse)", "depth": 0, "wall_s": 400.0, "cpu_s": 700.0, "peak_rss_mb": 2900.0,
               "rss_end_mb": 1500.0},
              {"name": "sft", "depth": 1, "wall_s": 200.0, "cpu_s": 390.0, "peak_rss_mb": 2900.0, "rss_end_mb": 1400.0},
              {"name": "evaluation", "depth": 0, "wall_s": 150.0, "cpu_s": 250.0, "peak_rss_mb": 2000.0,
               "rss_end_mb": 1900.0}]
    result = {"wall_s": 560.0, "peak_rss_mb": 2900.0, "phases": phases, "shipped_recipe": True,
              "load_average_end": [2.0, 2.0, 2.0]}
    summary = bench.summary.main_summary([result])
    assert summary["cpu_s"] == 950.0  # top-level phases only: the nested sft is inside training
    report = {"summary": {"sft": {"kit": None, "ref": None}, "dpo": {"kit": None, "ref": None}, "gen": None},
              "arms": {"main": [result]}, "peak": [], "settings": {}}
    bench.summary.summarise(report, harness().arith.Dims.from_config(harness().arith.SHAPES["tiny"]), 16, gpu=False)
    got = {t["key"]: t["pass"] for t in report["targets"]}
    assert got["main_wall"] is True and got["main_memory"] is True
    lines = "\n".join(bench.report._main_lines(report["summary"]["main"], {t["key"]: t for t in report["targets"]}))
    assert "|   sft | 200 |" in lines and "| **main job** | 560 | 950 |" in lines and "PASS (560 s)" in lines
    result["shipped_recipe"] = False
    bench.summary.summarise(report, harness().arith.Dims.from_config(harness().arith.SHAPES["tiny"]), 16, gpu=False)
    assert {t["key"]: t["pass"] for t in report["targets"]}["main_wall"] is None  # a cut-down job proves nothing

    from stylealign.config import load_recipe

    settings = bench.Settings(quick=True, model="smollm2-135m")
    setup = run.Setup(model_path="/models/x", recipe_name=cpu_recipe, recipe=load_recipe(cpu_recipe),
                      out=tmp_path, rows={}, rows_path=tmp_path / "rows.json", dims=None, max_length=None)
    path, shipped = run.main_recipe(settings, setup)
    cut = yaml.safe_load(open(path))
    assert not shipped and cut["base"] == "/models/x" and cut["sft"]["max_steps"] == 4 and cut["dpo"]["max_steps"] == 2
    assert load_recipe(path).select.max_new_tokens == 8
    assert run.main_recipe(bench.Settings(model="smollm2-135m"), setup) == (cpu_recipe, True)


# ---- the scale area ------------------------------------------------------------------------------------------------
def test_parameter_counts_of_the_shapes_by_hand():
    # SmolLM2-360M: per layer q, o 960x960, k, v 960x320, MLP 3 x 960x2560; tied 49152x960 embedding; 2 norms a
    # layer and a final one
    layer = 2 * 960 * 960 + 2 * 960 * 320 + 3 * 960 * 2560
    assert arith.param_count(arith.SHAPES["smollm2-360m"]) == 32 * layer + 49152 * 960 + (2 * 32 + 1) * 960 == 361_821_120
    assert arith.param_count(arith.SHAPES["smollm2-135m"]) == 134_515_008  # the published 134.5M
    assert arith.param_count(arith.SHAPES["smol-1b"]) == 1_069_639_680
    assert arith.param_count(arith.SHAPES["llama-1b"]) == 1_235_814_400  # Llama 3.2 1B, as published
    untied = {**arith.SHAPES["tiny"], "tie_word_embeddings": False}
    assert arith.param_count(untied) - arith.param_count(arith.SHAPES["tiny"]) == 49152 * 64  # a second V x d head
    assert arith.param_count(arith.SHAPES["tiny"]) == 3_219_776
    assert 2.0 < arith.param_count(arith.SHAPES["tiny-2x"]) / arith.param_count(arith.SHAPES["tiny"]) < 2.1


def test_growth_is_per_seq_len_against_the_smallest_size():
    rows = [{"params": 360, "seq_len": 256, "tps": 50.0, "mem": 3000.0},
            {"params": 135, "seq_len": 256, "tps": 200.0, "mem": 1000.0},
            {"params": 135, "seq_len": 1024, "tps": 100.0, "mem": None},
            {"params": 360, "seq_len": 1024, "tps": 20.0, "mem": 4000.0}]
    assert arith.growth(rows, ("tps", "mem")) == [{"tps": 0.25, "mem": 3.0}, {"tps": 1.0, "mem": 1.0},
                                                  {"tps": 1.0, "mem": None}, {"tps": 0.2, "mem": None}]


def test_scale_settings_order_and_estimate():
    bench = harness()
    scale = bench.scale
    assert scale.by_size(["smol-1b", "tiny", "smollm2-135m"]) == ["tiny", "smollm2-135m", "smol-1b"]
    with pytest.raises(ValueError, match="unknown shape"):
        bench.Settings(scale_shapes="tiny,llama-900b")
    with pytest.raises(ValueError, match="at least 128"):
        bench.Settings(scale_seq_lens="64,256")
    assert bench.Settings(scale_seq_lens="256,1024").scale_seq_lens == (256, 1024)
    done = [{"shape": "tiny", "seq_len": 256, "wall_seconds": 10.0, "load_seconds": 3.0, "warmup_seconds": [1.0],
             "steps": [{"seconds": 1.0}]}]
    flops = scale.train_flops("tiny-2x", 256) / scale.train_flops("tiny", 256)
    params = arith.param_count(arith.SHAPES["tiny-2x"]) / arith.param_count(arith.SHAPES["tiny"])
    assert scale.estimate_seconds(done, [("tiny-2x", 256)]) == pytest.approx(5 + 3 * params + 2 * flops)
    assert scale.estimate_seconds(done, [("tiny-2x", 1024)]) == 0  # nothing measured at that length


def test_quick_scale_area_runs_end_to_end(tiny_model_dir, tmp_path, capsys):
    """Kit and plain TRL at two tiny shapes, through the CLI (one process per arm, as in the full area; one seq len
    here to keep the suite short: growth is per seq len, tested above); the rows' growth figures are the rows' own
    ratios to the smallest shape's."""
    from stylealign.cli import main

    out = tmp_path / "bench"
    code = main(["bench", "--quick", "--only", "scale", "--model", str(tiny_model_dir), "--quant", "none",
                 "--out", str(out), "--steps", "1", "--no-profile", "--scale-seq-lens", "128"])
    assert code == 0, capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert set(report["arms"]) == {"scale"} and all("error" not in r for r in report["arms"]["scale"])
    rows = report["summary"]["scale"]["rows"]
    assert [(r["shape"], r["params"], r["seq_len"]) for r in rows] == [
        (shape, arith.param_count(arith.SHAPES[shape]), 128) for shape in ("tiny", "tiny-2x")]
    for row in rows:
        for key in ("kit_tokens_per_s", "ref_tokens_per_s", "kit_peak_memory_mb", "ref_peak_memory_mb"):
            assert row[key] > 0
            smallest = next(r for r in rows if r["shape"] == "tiny" and r["seq_len"] == row["seq_len"])
            assert row["growth"][key] == pytest.approx(row[key] / smallest[key])
        assert row["speed_ratio"] == pytest.approx(row["kit_tokens_per_s"] / row["ref_tokens_per_s"])
    md = (out / "report.md").read_text()
    assert "| size | parameters | seq len | kit tokens/s | TRL tokens/s |" in md and "| tiny-2x | 7M | 128 |" in md
    assert "Targets:" not in md  # the scale area alone judges no target
