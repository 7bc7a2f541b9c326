"""The generation arm (in the worker process): the kit's batched Generator with mixed [None, adapter] batches
against one `model.generate` per answer and against 16-row batches with PEFT's per-row routing, and the arena's
one and two streamed panes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from .measure import memory, sync
from .spec import ArmSpec
from .training import user_lora

ONE_BY_ONE_ROWS = 16  # the one-by-one reference answers the first rows only: a rate per answer, minutes saved
FORMER_BATCH = 16     # the evaluation's batch of 16 rows with PEFT's per-row routing: the decoding reference


def random_adapter(model, folder: Path):
    """Save a fresh LoRA (r16, all-linear; B = 0, so its answers equal the base's: equal lengths in
    both arms) to `folder` and return the model without it."""
    from peft import get_peft_model

    peft_model = get_peft_model(model, user_lora())
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

    alone = min(len(convs), ONE_BY_ONE_ROWS)

    def reference():  # what a user writes: one model.generate per answer
        return one_by_one(gen, convs[:alone], adapters[:alone], cfg)

    def former():  # the evaluation's batches before: 16 rows, PEFT's per-row routing
        gen.row_scaling = False
        try:
            return gen.generate(convs, adapters, cfg, batch_size=FORMER_BATCH)
        finally:
            gen.row_scaling = True

    batched, single, before, panes1, panes2 = [], [], [], [], []
    for rep in range(spec.reps):
        sync(); t = time.perf_counter()
        texts = gen.generate(convs, adapters, cfg, batch_size=spec.batch_size)
        sync(); batched.append({"seconds": time.perf_counter() - t, "answers": len(texts), "tokens": n_tok(texts)})
        sync(); t = time.perf_counter()
        texts = reference()
        sync(); single.append({"seconds": time.perf_counter() - t, "answers": len(texts), "tokens": n_tok(texts)})
        sync(); t = time.perf_counter()
        texts = former()
        sync(); before.append({"seconds": time.perf_counter() - t, "answers": len(texts), "tokens": n_tok(texts)})
        for rows, sink in (([prompts[0]], panes1), ([prompts[0], prompts[0]], panes2)):
            names = ["bench"] if len(rows) == 1 else [None, "bench"]
            sink.append(stream_once(gen, rows, names, cfg))
    result = {"batched": batched, "one_by_one": single, "former": before, "pane1": panes1, "pane2": panes2,
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
