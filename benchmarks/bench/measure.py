"""What every measured arm shares inside its worker process: the peak-memory window, CUDA-synchronised
step clocks (with one optional profiled step), per-batch token counts, and the matmul peak arm.

Steps are timed end to end (step end to step end: data, forward, backward, optimizer); the first
`warmup` steps are not counted; with `profile`, one extra step runs under torch.profiler.
"""

from __future__ import annotations

import time
from pathlib import Path

from .spec import ArmSpec

# ---------------------------------------------------------------- memory and clocks


def reset_peak() -> None:
    """Start a new peak-memory window: RSS high-water mark (Linux) and the CUDA peak."""
    import torch

    from stylealign.phases import reset_hwm

    reset_hwm()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def memory() -> dict:
    """Return peak RSS of the whole process, the RSS high-water mark since reset_peak(), and CUDA peak (MiB)."""
    import torch

    from stylealign.phases import process_peak_mb, status_mb

    status = {k: round(v, 1) for k, v in status_mb().items()}  # /proc/self/status, MiB
    out = {"peak_rss_mb": round(process_peak_mb(), 1),
           "window_peak_rss_mb": status.get("VmHWM"), "rss_mb": status.get("VmRSS")}
    if torch.cuda.is_available():
        out["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def profile_table(prof, path: Path, rows: int = 30) -> list[dict]:
    """Write the profiler's op table (by self time) to `path`; return its top entries."""
    import torch

    key = "self_device_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
    averages = prof.key_averages()
    try:
        table = averages.table(sort_by=key, row_limit=rows, max_name_column_width=60)
    except (KeyError, AttributeError, ValueError):
        key = "self_cpu_time_total"
        table = averages.table(sort_by=key, row_limit=rows, max_name_column_width=60)
    path.write_text(table + "\n")
    top = sorted(averages, key=lambda e: getattr(e, key, 0) or 0, reverse=True)[:12]
    total = sum(e.self_cpu_time_total for e in averages) or 1
    return [{"op": e.key, "self_ms": round(e.self_cpu_time_total / 1000, 1), "calls": e.count,
             "share": round(e.self_cpu_time_total / total, 3)} for e in top]


# ---------------------------------------------------------------- batches


def batch_stats(batch) -> dict:
    """Return the non-padding tokens, padded slots, sequences and per-sequence lengths of a batch."""
    ids = batch["input_ids"]
    if "attention_mask" in batch:
        lengths = batch["attention_mask"].sum(-1).tolist()
    elif "cu_seq_lens_q" in batch:
        cu = batch["cu_seq_lens_q"].tolist()
        lengths = [b - a for a, b in zip(cu, cu[1:])]
    elif "position_ids" in batch:
        starts = (batch["position_ids"].flatten() == 0).nonzero().flatten().tolist() + [ids.numel()]
        lengths = [b - a for a, b in zip(starts, starts[1:])]
    else:
        lengths = [ids.shape[-1]] * ids.shape[0]
    labels = batch.get("labels")
    out = {"tokens": int(sum(lengths)), "slots": int(ids.numel()), "sequences": len(lengths), "lengths": lengths}
    if labels is not None:
        out["loss_tokens"] = int((labels != -100).sum())
    return out


def count_batches(trainer, sink: list) -> None:
    """Wrap the trainer's collator so every batch's stats land in `sink`, in order."""
    collate = trainer.data_collator

    def counted(features):
        batch = collate(features)
        sink.append(batch_stats(batch))
        return batch

    trainer.data_collator = counted


def step_clock(total_steps: int, warmup: int, profile_to: Path | None):
    """Return a TrainerCallback that times steps (end to end) and profiles the last one if asked."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []
            self.first_begin = None
            self.prof = None
            self.top = None

        def on_step_begin(self, args, state, control, **kw):
            if self.first_begin is None:
                sync()
                self.first_begin = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            sync()
            self.ends.append(time.perf_counter())
            if self.prof is not None:
                self.prof.__exit__(None, None, None)
                self.top = profile_table(self.prof, profile_to)
                self.prof = None
            elif profile_to is not None and len(self.ends) == total_steps - 1:
                import torch
                from torch.profiler import ProfilerActivity, profile

                acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
                self.prof = profile(activities=acts)
                self.prof.__enter__()

        def durations(self) -> list[float]:
            marks = [self.first_begin] + self.ends
            return [b - a for a, b in zip(marks, marks[1:])]

    return Clock()


def summarise_steps(clock, batches: list[dict], warmup: int, profiled: bool) -> dict:
    durations = clock.durations()
    n = len(durations) - (1 if profiled else 0)
    timed = list(range(warmup, n))
    steps = [{"seconds": round(durations[i], 4), **{k: v for k, v in batches[i].items() if k != "lengths"}}
             for i in timed if i < len(batches)]
    lengths = [n for i in timed if i < len(batches) for n in batches[i]["lengths"]]
    return {"steps": steps, "warmup_seconds": [round(d, 3) for d in durations[:warmup]], "lengths": lengths,
            "profile_top": clock.top}


# ---------------------------------------------------------------- matmul peak


def peak_arm(spec: ArmSpec) -> dict:
    """Return matmul throughput trials per dtype (GFLOP/s): square n x n products, timed by
    torch.utils.benchmark (it synchronises CUDA and picks the number of runs), dtypes alternated."""
    import torch
    from torch.utils.benchmark import Timer

    if spec.threads:
        torch.set_num_threads(spec.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    n = 8192 if device == "cuda" else 1024
    dtypes = {"fp32": torch.float32, "bf16": torch.bfloat16}
    timers = {k: Timer("a @ b", globals={"a": torch.randn(n, n, device=device).to(d),
                                         "b": torch.randn(n, n, device=device).to(d)},
                       num_threads=torch.get_num_threads()) for k, d in dtypes.items()}
    for timer in timers.values():  # warm-up (first call allocates, picks kernels)
        timer.timeit(2)
    trials: dict[str, list[float]] = {k: [] for k in dtypes}
    for _ in range(spec.trials):
        for name, timer in timers.items():
            trials[name].append(2 * n**3 / timer.blocked_autorange(min_run_time=0.4).median / 1e9)
    return {"n": n, "device": device, "threads": torch.get_num_threads(),
            "gflops": {k: [round(v, 1) for v in vals] for k, vals in trials.items()}}
