"""The machine the bench runs on: CPU model and matrix extensions, cores, memory, library versions, GPU,
load average. Every report carries it, because the ratios are only comparable on the same kind of machine.
"""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path


def machine() -> dict:
    """Return CPU model, cores, memory, torch version and GPU (when one is visible)."""
    from importlib.metadata import PackageNotFoundError, version

    cpu, flags = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("", platform.machine(), platform.processor()):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    mem_gb = None
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    names = set(flags.split(":", 1)[-1].split())
    out = {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": mem_gb, "python": platform.python_version(),
           "bf16_matmul": bool(names & {"avx512_bf16", "amx_bf16"}),
           "matrix_extensions": [label for flag, label in MATRIX_FLAGS if flag in names],
           "torch_cpu_capability": _torch_capability(), "gpu": None}
    for name in ("torch", "transformers", "trl", "peft", "bitsandbytes"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    try:
        got = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        if got.returncode == 0 and got.stdout.strip():
            out["gpu"] = got.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return out


MATRIX_FLAGS = (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_vnni", "AVX-512 VNNI"),
                ("avx512_bf16", "AVX-512 BF16"), ("amx_tile", "AMX"), ("amx_bf16", "AMX BF16"), ("amx_int8", "AMX INT8"))


def _torch_capability() -> str | None:
    """Return the CPU kernel level torch dispatches to here (e.g. AVX512, AVX2), if it says."""
    try:
        import torch

        return torch.backends.cpu.get_cpu_capability()
    except (ImportError, AttributeError, RuntimeError):
        return None


def cpu_line(m: dict) -> str:
    """Return 'CPU model (extensions; torch kernels X)' for a report header."""
    ext = ", ".join(m.get("matrix_extensions") or []) or "no AVX-512/AMX"
    amx = "AMX" if any(e.startswith("AMX") for e in m.get("matrix_extensions") or []) else "no AMX"
    bf16 = "AVX-512 BF16" if "AVX-512 BF16" in (m.get("matrix_extensions") or []) else "no AVX-512 BF16"
    cap = f"; torch CPU kernels {m['torch_cpu_capability']}" if m.get("torch_cpu_capability") else ""
    return f"{m['cpu']} ({bf16}, {amx}; flags: {ext}{cap})"


def load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()
