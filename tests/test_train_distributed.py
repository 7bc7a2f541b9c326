"""A run under `accelerate launch` with two CPU processes writes one complete run folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_two_process_cpu_run_under_accelerate_launch(small_persona, tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
           str(REPO / "configs" / "accelerate" / "cpu_2proc.yaml"), "--main_process_port", "29533",
           "-m", "stylealign", "train", "sft", "--persona", str(small_persona), "--run", str(run),
           "--base", str(tiny_model_dir), "--quant", "none", "--dtype", "fp32", "--eval-fraction", "0",
           "--sft.max-steps", "2", "--sft.batch-size", "2", "--lora.r", "4", "--sft.learning-rate", "1e-2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["stages"]["sft"]["steps"] == 2
    weights = load_file(run / "adapter" / "adapter_model.safetensors")
    assert any(t.abs().sum() > 0 for n, t in weights.items() if "lora_B" in n)
    assert not (tmp_path / "run.partial").exists()
