"""One measured arm per process: `python -m stylealign.bench.worker SPEC.json` writes spec.result.

Each arm runs in its own process so its peak memory (RSS on CPU, max allocated on a GPU) is its own.
Arms:
  sft  kit  stylealign.train.sft_trainer with the recipe (its quant/dtype, padding-free, completion-only)
  sft  ref  plain TRL as a user writes it: fp32 from_pretrained, SFTConfig defaults, LoRA via peft_config
  dpo  kit  stylealign.train.dpo_trainer on a PeftModel (TRL's frozen "ref" adapter is the reference)
  dpo  ref  plain DPOTrainer with a separate reference model copy (fp32 from_pretrained)
  gen  -    Generator.generate (mixed [None, adapter] batches) vs one-by-one model.generate; arena panes
  peak -    the matmul peak (fp32, bf16) on this machine, now
Steps are timed end to end (step end to step end: data, forward, backward, optimizer); the first
`warmup` steps are not counted; with `profile`, one extra step runs under torch.profiler.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path

from stylealign.files import write_json

from .spec import ArmSpec

LORA_R = 16


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


# ---------------------------------------------------------------- training arms


def _recipe(spec: ArmSpec):
    from stylealign.config import load_recipe

    stage = spec.area
    overrides = {"base": spec.model, "eval_fraction": 0.0, f"{stage}.max_steps": spec.total_steps,
                 f"{stage}.batch_size": spec.batch_size, f"{stage}.grad_accum": 1,
                 f"{stage}.save_steps": 10**6, f"{stage}.logging_steps": 10**6, f"{stage}.warmup_ratio": 0.0}
    if spec.quant:
        overrides["quant"] = spec.quant
    if spec.max_length:
        overrides["max_length"] = spec.max_length
    if spec.arm == "kit":
        overrides.update(spec.kit_set or {})
    return load_recipe(spec.recipe, overrides)


def _user_lora():
    from peft import LoraConfig

    return LoraConfig(r=LORA_R, lora_alpha=2 * LORA_R, target_modules="all-linear", task_type="CAUSAL_LM")


def _user_model(path: str, quant: str = "none", attn: str | None = None):
    """What plain user code loads: from_pretrained defaults (fp32 for an fp32 checkpoint on CPU), or for
    QLoRA the 4-bit NF4 config of TRL's and PEFT's examples (bf16 compute, double quantization)."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs = {"attn_implementation": attn} if attn else {}
    if quant == "nf4":
        kwargs.update(dtype=torch.bfloat16, quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16))
        if torch.cuda.is_available():
            kwargs["device_map"] = {"": 0}
    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def setup_padding_free(recipe, area: str) -> bool:
    return area == "sft" and recipe.sft.padding_free


def train_arm(spec: ArmSpec) -> dict:
    """Return the timed steps, memory and setup of one training arm (SFT or DPO, kit or plain TRL)."""
    import torch

    from stylealign import models

    if spec.arm == "ref" and spec.ref == "kit":  # A/B of --kit-set: the reference is the kit as shipped
        spec = dataclasses.replace(spec, arm="kit", kit_set={})
    rows = json.loads(Path(spec.rows).read_text())["sft" if spec.area == "sft" else "preference"]
    started = time.perf_counter()
    base = models.resolve_base(spec.model)
    tokenizer = models.load_tokenizer(base)
    make = _kit_trainer if spec.arm == "kit" else _ref_trainer
    trainer, setup = make(spec, base, tokenizer, rows, Path(spec.work))
    copies = 1 if spec.area == "sft" else (1 if getattr(trainer, "ref_model", None) is None else 2)
    batches: list[dict] = []
    count_batches(trainer, batches)
    profile_to = Path(spec.profile) if spec.profile else None
    clock = step_clock(spec.total_steps, spec.warmup, profile_to)
    trainer.add_callback(clock)
    load_s = time.perf_counter() - started
    reset_peak()
    trainer.train()
    result = summarise_steps(clock, batches, spec.warmup, profile_to is not None)
    result.update(setup=setup, model_copies=copies, load_seconds=round(load_s, 2), threads=torch.get_num_threads(),
                  memory=memory(), profile=profile_to.name if profile_to else None)
    return result


def _kit_trainer(spec: ArmSpec, base, tokenizer, rows: list[dict], out_dir: Path):
    """Return (trainer, setup) for the kit's own SFT / DPO trainer with the recipe."""
    import torch

    from stylealign import models, train

    recipe = _recipe(spec)
    torch.manual_seed(recipe.seed)
    if recipe.threads > 0:
        torch.set_num_threads(recipe.threads)
    model = models.load_model(base, quant=recipe.quant, dtype=recipe.dtype, attn=train.training_attention(recipe))
    data = train.StageData(rows, [])
    if spec.area == "sft":
        trainer = train.sft_trainer(model, tokenizer, data, recipe, out_dir)
    else:
        from peft import get_peft_model

        model = get_peft_model(model, train.lora_config(recipe))  # as after SFT: a trainable adapter
        trainer = train.dpo_trainer(model, tokenizer, data, recipe, out_dir)
    stage = getattr(recipe, spec.area)
    setup = {"quant": recipe.quant, "dtype": str(models.parse_dtype(recipe.dtype)).replace("torch.", ""),
             "padding_free": recipe.sft.padding_free if spec.area == "sft" else False,
             "gradient_checkpointing": stage.gradient_checkpointing,
             "fast_paths": [f"lm head {trainer.stylealign_lm_head}", f"LoRA {trainer.stylealign_lora_compute}",
                            f"attention {trainer.model.config._attn_implementation}"]
             + (["length-grouped"] if stage.group_by_length and not setup_padding_free(recipe, spec.area) else [])}
    return trainer, setup


def _ref_trainer(spec: ArmSpec, base, tokenizer, rows: list[dict], out_dir: Path):
    """Return (trainer, setup) for plain TRL as a user writes it (fp32, config defaults, peft_config)."""
    import torch

    from stylealign import train

    torch.manual_seed(0)
    extra = dict(spec.ref_set or {})
    attn = extra.pop("attn_implementation", None)
    model = _user_model(base.path, spec.ref_quant, attn)
    common = dict(output_dir=str(out_dir), max_steps=spec.total_steps, per_device_train_batch_size=spec.batch_size,
                  report_to="none", save_strategy="no", logging_steps=10**6, seed=0, data_seed=0, **extra)
    if spec.max_length:  # rows stitched past TRL's default max_length (1024) must not be cut
        common["max_length"] = spec.max_length
    if not torch.cuda.is_available():
        common["use_cpu"] = True  # TrainingArguments refuses bf16 on a CPU-only machine without it
    if spec.area == "sft":
        from trl import SFTConfig, SFTTrainer

        args = SFTConfig(**common)
        trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer, peft_config=_user_lora(),
                             train_dataset=train.as_dataset(train.sft_rows(rows)))
    else:
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common)
        trainer = DPOTrainer(model=model, ref_model=_user_model(base.path, spec.ref_quant, attn), args=args,
                             processing_class=tokenizer,
                             peft_config=_user_lora(), train_dataset=train.as_dataset(train.dpo_rows(rows)))
    setup = {"quant": spec.ref_quant, "dtype": str(model.dtype).replace("torch.", ""), "autocast_bf16": bool(args.bf16),
             "attention": model.config._attn_implementation, "liger": bool(getattr(args, "use_liger_kernel", False)),
             "padding_free": bool(getattr(args, "padding_free", False)),
             "gradient_checkpointing": bool(args.gradient_checkpointing)}
    return trainer, setup


# ---------------------------------------------------------------- generation


def random_adapter(model, folder: Path):
    """Save a fresh LoRA (r16, all-linear; B = 0, so its answers equal the base's: equal lengths in
    both arms) to `folder` and return the model without it."""
    from peft import get_peft_model

    peft_model = get_peft_model(model, _user_lora())
    peft_model.save_pretrained(folder)
    return peft_model.unload()


def gen_arm(spec: ArmSpec) -> dict:
    import torch

    from stylealign import models
    from stylealign.generate import GenerationConfig, Generator

    if spec.threads:
        torch.set_num_threads(spec.threads)
    prompts = json.loads(Path(spec.rows).read_text())["prompts"]
    base = models.resolve_base(spec.model)
    tokenizer = models.load_tokenizer(base)
    model = models.load_model(base, quant=spec.quant, dtype="auto")
    model = random_adapter(model, Path(spec.work) / "adapter")
    gen = Generator(model=model, tokenizer=tokenizer)
    gen.add_adapter("bench", str(Path(spec.work) / "adapter"))
    cfg = GenerationConfig(max_new_tokens=spec.max_new_tokens, seed=0)
    convs = [p for p in prompts for _ in (0, 1)]
    adapters = [a for _ in prompts for a in (None, "bench")]
    n_tok = lambda texts: sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)  # noqa: E731
    gen.generate(convs[:2], adapters[:2], GenerationConfig(max_new_tokens=2, seed=0))  # warm-up
    one_by_one(gen, convs[:1], adapters[:1], GenerationConfig(max_new_tokens=2, seed=0))

    def reference():  # what a user writes: one model.generate per answer
        return one_by_one(gen, convs, adapters, cfg)

    batched, single, panes1, panes2 = [], [], [], []
    for rep in range(spec.reps):
        sync(); t = time.perf_counter()
        texts = gen.generate(convs, adapters, cfg, batch_size=spec.batch_size)
        sync(); batched.append({"seconds": time.perf_counter() - t, "answers": len(texts), "tokens": n_tok(texts)})
        sync(); t = time.perf_counter()
        texts = reference()
        sync(); single.append({"seconds": time.perf_counter() - t, "answers": len(texts), "tokens": n_tok(texts)})
        for rows, sink in (([prompts[0]], panes1), ([prompts[0], prompts[0]], panes2)):
            names = ["bench"] if len(rows) == 1 else [None, "bench"]
            sink.append(stream_once(gen, rows, names, cfg))
    result = {"batched": batched, "one_by_one": single, "pane1": panes1, "pane2": panes2,
              "reference": "one-by-one model.generate",
              "quant": spec.quant, "dtype": str(next(gen.model.parameters()).dtype).replace("torch.", ""),
              "threads": torch.get_num_threads(), "prompt_lengths": [len(gen.encode([p])["input_ids"][0]) for p in prompts],
              "pairs": len(prompts), "batch_size": spec.batch_size, "max_new_tokens": spec.max_new_tokens,
              "memory": memory()}
    if spec.profile:
        result["profile_top"] = profile_generate(gen, convs[: spec.batch_size], adapters[: spec.batch_size],
                                                 GenerationConfig(max_new_tokens=min(16, cfg.max_new_tokens), seed=0),
                                                 Path(spec.profile))
        result["profile"] = Path(spec.profile).name
    return result


def one_by_one(gen, conversations, adapters, cfg) -> list[str]:
    """The reference: one `model.generate` call per conversation, switching adapters as a user would."""
    import contextlib

    model, tok = gen.model, gen.tokenizer
    texts = []
    for conv, name in zip(conversations, adapters):
        enc = tok.apply_chat_template(conv, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        enc = {k: v.to(gen.device) for k, v in enc.items()}
        if name is None:
            ctx = model.disable_adapter()
        else:
            model.set_adapter(name)
            ctx = contextlib.nullcontext()
        with ctx:
            out = model.generate(**enc, do_sample=cfg.do_sample, temperature=cfg.temperature, top_p=cfg.top_p,
                                 repetition_penalty=cfg.repetition_penalty, max_new_tokens=cfg.max_new_tokens,
                                 pad_token_id=tok.pad_token_id)
        texts.append(tok.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return texts


def stream_once(gen, conversations, adapters, cfg) -> dict:
    """Run one arena stream; return time to first token, total time, steps and tokens per row."""
    sync(); start = time.perf_counter()
    first, steps, last = None, 0, None
    for last in gen.stream(conversations, adapters, cfg):
        steps += 1
        if first is None:
            first = time.perf_counter() - start
    total = time.perf_counter() - start
    tokens = [len(gen.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in (last or [])]
    return {"ttft": first, "seconds": total, "steps": steps, "tokens": tokens}


def profile_generate(gen, convs, adapters, cfg, path: Path) -> list[dict]:
    """cProfile one batched generate call: where the Python decode loop spends its time."""
    import cProfile
    import io
    import pstats

    prof = cProfile.Profile()
    prof.enable()
    gen.generate(convs, adapters, cfg, batch_size=len(convs))
    prof.disable()
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf).sort_stats("tottime")
    stats.print_stats(30)
    path.write_text(buf.getvalue())
    total = sum(v[2] for v in stats.stats.values()) or 1
    top = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:12]
    return [{"op": f"{Path(k[0]).name}:{k[1]}({k[2]})", "self_ms": round(v[2] * 1000, 1), "calls": v[1],
             "share": round(v[2] / total, 3)} for k, v in top]


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


# ---------------------------------------------------------------- entry point

ARMS = {"sft": train_arm, "dpo": train_arm, "gen": gen_arm, "peak": peak_arm}


def main(argv: list[str]) -> int:
    spec = ArmSpec.load(argv[0])
    if spec.threads:
        import torch

        torch.set_num_threads(spec.threads)
    result = ARMS[spec.area](spec)
    result.update(area=spec.area, arm=spec.arm, rep=spec.rep)
    write_json(spec.result, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
