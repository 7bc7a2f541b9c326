"""llama-cpp-python, loaded the way that runs on every CPU the kit is tested on.

llama.cpp's CPU backend repacks weights into "extra buffer types" for its AMX kernels. On a CPU that exposes AMX
(Intel Xeon with amx_tile), the llama-cpp-python 0.3 build segfaults at the first decode of the embedded Q4_1 GGUF
with them, and runs with plain buffers. `plain_buffers_on_amx()` switches them off there (and only there: elsewhere
the repacked AVX-512 kernels are faster), for every Llama created in this process afterwards.
"""

from __future__ import annotations

from pathlib import Path


def cpu_has_amx(cpuinfo: str | None = None) -> bool:
    """True when /proc/cpuinfo (or the given text) lists the AMX tile flag."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return False
    return any(line.startswith("flags") and " amx_tile" in line for line in cpuinfo.splitlines())


def plain_buffers_on_amx() -> bool:
    """On an AMX CPU, make llama-cpp-python's default model params use plain buffers; return whether it did."""
    if not cpu_has_amx():
        return False
    from llama_cpp import llama_cpp as low

    default = low.llama_model_default_params
    if getattr(default, "plain_buffers", False):
        return True

    def params():
        p = default()
        if hasattr(p, "use_extra_bufts"):
            p.use_extra_bufts = False
        return p

    params.plain_buffers = True
    low.llama_model_default_params = params
    return True
