"""From the arms' raw results to the report's numbers: step timings pooled into rates, FLOPs, utilisation,
kit / reference ratios, and pass / fail per target (bench.arith holds the formulas and the targets).
"""

from __future__ import annotations

from . import arith

REF_LORA_R = 16  # the plain-TRL arm's LoRA rank (training.LORA_R)


def _ok(results: list[dict]) -> list[dict]:
    return [r for r in results or [] if "error" not in r]


def train_summary(results: list[dict], dims: arith.Dims, r: int, mode: str, gpu: bool) -> dict | None:
    """Pool the timed steps of every rep of one arm into medians."""
    results = _ok(results)
    steps = [s for res in results for s in res["steps"]]
    if not steps:
        return None
    secs = [s["seconds"] for s in steps]
    lengths = [n for res in results for n in res["lengths"]]
    context = arith.mean_context(lengths)
    fpt = arith.flops_per_token(dims, mode, r, context)
    mem_key = "cuda_peak_mb" if gpu else "peak_rss_mb"
    out = {
        "tokens_per_s": arith.rate([s["tokens"] for s in steps], secs),
        "pairs_per_s": arith.rate([s["sequences"] / 2 for s in steps], secs) if mode == "dpo" else None,
        "step_seconds": arith.median(secs),
        "tokens_per_step": arith.median([s["tokens"] for s in steps]),
        "padding_share": 1 - sum(s["tokens"] for s in steps) / max(1, sum(s["slots"] for s in steps)),
        "timed_steps": len(steps),
        "warmup_seconds": [round(sum(res.get("warmup_seconds") or []), 2) for res in results],  # compile, when on
        "peak_memory_mb": max(res["memory"].get(mem_key) or 0 for res in results),
        "train_window_peak_rss_mb": max(res["memory"].get("window_peak_rss_mb") or 0 for res in results),
        "memory_kind": "cuda max allocated" if gpu else "process peak RSS",
        "model_copies": results[-1].get("model_copies"),
        "setup": results[-1].get("setup"),
        "threads": results[-1].get("threads"),
        "mean_context": round(context, 1),
        "flops_per_token": fpt,
        "profile": next((res.get("profile") for res in results if res.get("profile")), None),
        "profile_top": next((res.get("profile_top") for res in results if res.get("profile_top")), None),
    }
    out["gflops_per_s"] = out["tokens_per_s"] * fpt / 1e9 if out["tokens_per_s"] else None
    return out


def gen_summary(results: list[dict], dims: arith.Dims) -> dict | None:
    results = _ok(results)
    if not results:
        return None
    res = results[0]
    per = lambda runs, key: arith.median([x[key] / x["seconds"] for x in runs])  # noqa: E731
    pane = lambda runs: {  # noqa: E731
        "ttft_s": arith.median([x["ttft"] for x in runs]),
        "seconds": arith.median([x["seconds"] for x in runs]),
        "steps": arith.median([x["steps"] for x in runs]),
        "seconds_per_step": arith.median([x["seconds"] / max(1, x["steps"]) for x in runs]),
        "tokens_per_s_per_pane": arith.median([sum(x["tokens"]) / len(x["tokens"]) / x["seconds"] for x in runs
                                               if x["tokens"]]),
    }
    prompt = arith.median(res["prompt_lengths"]) or 0
    fpt = arith.flops_per_token(dims, "forward", 16, prompt + res["max_new_tokens"] / 2)
    out = {"batched": {"answers_per_s": per(res["batched"], "answers"), "tokens_per_s": per(res["batched"], "tokens")},
           "one_by_one": {"answers_per_s": per(res["one_by_one"], "answers"),
                          "tokens_per_s": per(res["one_by_one"], "tokens"), "answers": res["one_by_one"][0]["answers"]},
           "former": res.get("former") and {"answers_per_s": per(res["former"], "answers"),
                                            "tokens_per_s": per(res["former"], "tokens")},
           "pane1": pane(res["pane1"]), "pane2": pane(res["pane2"]),
           "answers": res["batched"][0]["answers"], "max_new_tokens": res["max_new_tokens"],
           "batch_size": res["batch_size"], "quant": res["quant"], "dtype": res["dtype"], "threads": res["threads"],
           "flops_per_token": fpt, "profile": res.get("profile"), "profile_top": res.get("profile_top"),
           "tokens_generated": {"batched": [x["tokens"] for x in res["batched"]],
                                "one_by_one": [x["tokens"] for x in res["one_by_one"]]}}
    p1, p2 = out["pane1"], out["pane2"]
    # Per decode step, so a pane that stopped early does not flatter either side; equal to the plain
    # time ratio when both ran the same number of steps (the bench's zero-init adapter ensures that).
    out["two_pane_time_ratio"] = arith.ratio(p2["seconds_per_step"], p1["seconds_per_step"])
    out["two_pane_wall_ratio"] = arith.ratio(p2["seconds"], p1["seconds"])
    return out


def peak_summary(peaks: list[dict]) -> dict:
    trials: dict[str, list[float]] = {}
    for p in _ok(peaks):
        for k, vals in p["gflops"].items():
            trials.setdefault(k, []).extend(vals)
    return {k: {"median_gflops": arith.median(v), "max_gflops": max(v), "trials": len(v)} for k, v in trials.items()}


def summarise(report: dict, dims: arith.Dims, r: int, gpu: bool) -> None:
    arms = report["arms"]
    report["peak_summary"] = peak = peak_summary(report["peak"])
    bf16 = (peak.get("bf16") or {}).get("median_gflops")
    fp32 = (peak.get("fp32") or {}).get("median_gflops")
    s: dict = {}
    for area, mode in (("sft", "train"), ("dpo", "dpo")):
        kit = train_summary(arms.get(f"{area}-kit"), dims, r, mode, gpu)
        ref = train_summary(arms.get(f"{area}-ref"), dims, REF_LORA_R, mode, gpu)
        for part in (kit, ref):
            if part:
                part["util_bf16"] = arith.utilisation(part["tokens_per_s"], part["flops_per_token"], bf16 and bf16 * 1e9)
                part["util_fp32"] = arith.utilisation(part["tokens_per_s"], part["flops_per_token"], fp32 and fp32 * 1e9)
        s[area] = {"kit": kit, "ref": ref,
                   "speed_ratio": arith.ratio(kit and kit["tokens_per_s"], ref and ref["tokens_per_s"]),
                   "memory_ratio": arith.ratio(kit and kit["peak_memory_mb"], ref and ref["peak_memory_mb"])}
        if area == "dpo":
            s[area]["pairs_ratio"] = arith.ratio(kit and kit["pairs_per_s"], ref and ref["pairs_per_s"])
    gen = gen_summary(arms.get("gen"), dims)
    if gen:
        gen["speed_ratio"] = arith.ratio(gen["batched"]["answers_per_s"], gen["one_by_one"]["answers_per_s"])
        gen["decode_ratio"] = arith.ratio(gen["batched"]["answers_per_s"], (gen["former"] or {}).get("answers_per_s"))
        gen["util_bf16"] = arith.utilisation(gen["batched"]["tokens_per_s"], gen["flops_per_token"], bf16 and bf16 * 1e9)
    s["gen"] = gen
    s["main"] = main_summary(arms.get("main"))
    s["scale"] = scale_summary(arms.get("scale"), r, gpu)
    report["summary"] = s
    values = {
        "sft_speed": s["sft"]["speed_ratio"], "sft_memory": s["sft"]["memory_ratio"],
        "dpo_speed": s["dpo"]["speed_ratio"],
        "dpo_copies": (s["dpo"]["kit"] or {}).get("model_copies"),
        "eval_speed": gen and gen["speed_ratio"], "eval_decoding": gen and gen["decode_ratio"],
        "arena_two_panes": gen and gen["two_pane_time_ratio"],
        "utilisation": (s["sft"]["kit"] or {}).get("util_bf16"),
    }
    if s["main"] and s["main"]["shipped_recipe"]:  # the job's targets hold for the real job only
        values.update(main_wall=s["main"]["wall_s"], main_memory=s["main"]["peak_rss_mb"])
    if report["settings"].get("ref") == "kit":  # an A/B of --kit-set: the targets compare against plain TRL
        values = {}
    report["targets"] = arith.evaluate_targets(values)
    profiles = {"sft_speed": "sft", "sft_memory": "sft", "dpo_speed": "dpo", "eval_speed": "gen", "eval_decoding": "gen",
                "arena_two_panes": "gen"}
    for t in report["targets"]:
        area = profiles.get(t["key"])
        if t["pass"] is False and area:
            part = s[area] if area == "gen" else s[area]["kit"]
            t["profile"] = part and part.get("profile")


GROWTH_KEYS = ("kit_tokens_per_s", "ref_tokens_per_s", "kit_peak_memory_mb", "ref_peak_memory_mb")


def scale_summary(results: list[dict] | None, r: int, gpu: bool) -> dict | None:
    """Return the scale area's rows, one per (shape, seq len) in running order: kit and reference tokens/s and peak
    memory, their ratios, and `growth`: those four as multiples of the smallest shape's at the same seq len."""
    if not results:
        return None
    rows, setups = [], {}
    for shape, seq in dict.fromkeys((res["shape"], res["seq_len"]) for res in results):
        dims = arith.Dims.from_config(arith.SHAPES[shape])
        part = {arm: train_summary([x for x in results if (x["shape"], x["seq_len"], x["arm"]) == (shape, seq, arm)],
                                   dims, r if arm == "kit" else REF_LORA_R, "train", gpu) or {} for arm in ("kit", "ref")}
        row = {"shape": shape, "params": arith.param_count(arith.SHAPES[shape]), "seq_len": seq,
               "tokens_per_step": part["kit"].get("tokens_per_step") or part["ref"].get("tokens_per_step")}
        for arm in ("kit", "ref"):
            row.update({f"{arm}_{k}": part[arm].get(k) for k in ("tokens_per_s", "peak_memory_mb", "step_seconds")})
            setups[arm] = part[arm].get("setup") or setups.get(arm)
        row["speed_ratio"] = arith.ratio(row["kit_tokens_per_s"], row["ref_tokens_per_s"])
        row["memory_ratio"] = arith.ratio(row["kit_peak_memory_mb"], row["ref_peak_memory_mb"])
        rows.append(row)
    for row, growth in zip(rows, arith.growth(rows, GROWTH_KEYS)):
        row["growth"] = growth
    threads = next((x.get("threads") for x in _ok(results) if x.get("threads")), None)
    return {"rows": rows, "memory_kind": "cuda max allocated" if gpu else "process peak RSS", "setup": setups,
            "threads": threads}


def main_summary(results: list[dict]) -> dict | None:
    """Return the main job's totals and its top-level phases (nested ones kept for the table)."""
    results = _ok(results)
    if not results:
        return None
    res = results[0]
    return {"wall_s": res["wall_s"], "peak_rss_mb": res["peak_rss_mb"], "phases": res["phases"],
            "shipped_recipe": res.get("shipped_recipe"), "load_average_end": res.get("load_average_end"),
            "cpu_s": round(sum(p["cpu_s"] for p in res["phases"] if p["depth"] == 0), 1)}
