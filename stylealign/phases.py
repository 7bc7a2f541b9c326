"""Wall time, CPU time and peak memory per phase of a job (the main job, a training run).

`phase(name)` is a context manager on one process-wide log; phases nest (a training stage holds its
checkpoint probes). Each phase records its wall seconds, the process's CPU seconds (all threads: under
a loaded machine wall time is an upper bound, CPU seconds are not), the peak RSS inside it and the RSS
at its end. The peak comes from the kernel's high-water mark (VmHWM), reset at every phase boundary
(`/proc/self/clear_refs`) and folded into every open phase, so a nested phase does not hide its
parent's peak. On a GPU the phase's `torch.cuda.max_memory_allocated` is recorded too. Where VmHWM
cannot be reset (not Linux), the peak is the process's peak so far, said by `peak_kind`.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import time
from pathlib import Path

from stylealign import omp


def status_mb() -> dict[str, float]:
    """Return VmRSS and VmHWM of this process in MiB ({} where /proc is missing)."""
    out = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":")
                out[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def reset_hwm() -> bool:
    """Start a new RSS high-water-mark window (Linux); False where /proc does not allow it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def process_peak_mb() -> float:
    """Return the process's peak RSS since it started, in MiB (ru_maxrss)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cuda():
    torch = sys.modules.get("torch")  # never import torch just to time a phase
    return torch.cuda if torch is not None and torch.cuda.is_available() else None


class PhaseLog:
    """The phases of one job, in the order they ended; `records()` returns them in start order."""

    def __init__(self):
        self.started = time.time()
        self.done: list[dict] = []
        self._open: list[dict] = []
        self.max_rss_mb = process_peak_mb()  # ru_maxrss, good until the first reset of VmHWM
        self._resettable = reset_hwm()

    def _fold(self) -> None:
        """Fold the high-water mark since the last boundary into every open phase; start a new window."""
        st = status_mb()
        hwm = st.get("VmHWM", process_peak_mb()) if self._resettable else process_peak_mb()
        cuda = _cuda()
        cuda_peak = cuda.max_memory_allocated() / 2**20 if cuda else None
        self.max_rss_mb = max(self.max_rss_mb, hwm)
        for p in self._open:
            p["peak_rss_mb"] = max(p["peak_rss_mb"], hwm)
            if cuda_peak is not None:
                p["cuda_peak_mb"] = max(p.get("cuda_peak_mb") or 0.0, cuda_peak)
        if self._resettable:
            reset_hwm()
        if cuda:
            cuda.reset_peak_memory_stats()

    @contextlib.contextmanager
    def phase(self, name: str):
        self._fold()
        rec = {"name": name, "depth": len(self._open), "start_s": round(time.time() - self.started, 2),
               "peak_rss_mb": status_mb().get("VmRSS", 0.0), "_t": time.perf_counter(), "_cpu": time.process_time()}
        self._open.append(rec)
        try:
            yield rec
        finally:
            self._fold()
            self._open.remove(rec)
            rec["wall_s"] = round(time.perf_counter() - rec.pop("_t"), 2)
            rec["cpu_s"] = round(time.process_time() - rec.pop("_cpu"), 2)
            rec["rss_end_mb"] = round(status_mb().get("VmRSS", 0.0), 1)
            rec["peak_rss_mb"] = round(rec["peak_rss_mb"], 1)
            if "cuda_peak_mb" in rec:
                rec["cuda_peak_mb"] = round(rec["cuda_peak_mb"], 1)
            rec["peak_kind"] = "phase VmHWM" if self._resettable else "process ru_maxrss so far"
            self.done.append(rec)

    def records(self) -> list[dict]:
        return sorted(self.done, key=lambda r: (r["start_s"], r["depth"]))

    def peak_mb(self) -> float:
        """Return the process's peak RSS so far: the largest high-water mark of any window (resetting VmHWM
        resets the kernel's ru_maxrss too, so that alone would only cover the last window)."""
        st = status_mb()
        return max(self.max_rss_mb, st.get("VmHWM", 0.0), process_peak_mb())

    def summary(self) -> dict:
        """Return the job's phases with its total wall time, process peak RSS and the machine's load."""
        try:
            load = [round(x, 2) for x in os.getloadavg()]
        except OSError:
            load = None
        return {"wall_s": round(time.time() - self.started, 1), "peak_rss_mb": round(self.peak_mb(), 1),
                "load_average_end": load, "cpu_count": os.cpu_count(),
                "omp_wait": os.environ.get(omp.CHOSEN, "not chosen (not started by the CLI)"),
                "phases": self.records()}

    def table(self) -> str:
        """Return the phases as a plain-text table (nested phases indented)."""
        from stylealign.text import table

        rows = [["  " * r["depth"] + r["name"], f"{r['wall_s']:.1f}", f"{r['cpu_s']:.1f}", f"{r['peak_rss_mb']:,.0f}",
                 f"{r['rss_end_mb']:,.0f}"] for r in self.records()]
        return table(["phase", "wall s", "CPU s", "peak RSS MiB", "RSS at end MiB"], rows, markdown=False)


_LOG = PhaseLog()


def log() -> PhaseLog:
    """Return the process-wide phase log."""
    return _LOG


def phase(name: str):
    """Time `name` on the process-wide log (a context manager)."""
    return _LOG.phase(name)


def trim_heap() -> None:
    """Hand free heap pages back to the OS (glibc's malloc_trim; a no-op elsewhere). Tensors of changing sizes
    leave freed chunks the allocator keeps: without it a training run's RSS ratchets up step by step."""
    global _LIBC
    if _LIBC is None:
        import ctypes

        try:
            _LIBC = ctypes.CDLL("libc.so.6")
            _LIBC.malloc_trim  # noqa: B018  (glibc only)
        except (OSError, AttributeError):
            _LIBC = False
    if _LIBC:
        _LIBC.malloc_trim(0)


_LIBC = None


def trim_callback():
    """Return a TrainerCallback that trims the heap after every optimizer step (CPU training)."""
    from transformers import TrainerCallback

    class Trim(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            trim_heap()

    return Trim()


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc's malloc_trim), so the RSS of one
    phase does not carry into the next one."""
    import gc

    gc.collect()
    trim_heap()
