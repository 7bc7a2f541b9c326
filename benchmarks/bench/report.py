"""The bench report as Markdown (header with date and machine, one table of kit vs reference, the main job's
phases, targets, setups) and the writer of report.json + report.md. Reads the summary only, never the arms.
"""

from __future__ import annotations

from pathlib import Path

from stylealign.files import write_atomic, write_json
from stylealign.text import table

from . import arith
from .host import cpu_line


def _n(x, digits=1, suffix="") -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and abs(x) >= 100:
        return f"{x:,.0f}{suffix}"
    return f"{x:.{digits}f}{suffix}"


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _verdict(t: dict | None) -> str:
    if not t or t["pass"] is None:
        return "reported" if t and t["op"] == "report" else "—"
    return "PASS" if t["pass"] else "FAIL"


AREAS_WITH_TARGETS = {"sft", "dpo", "gen", "main"}
HEAD = ["area", "metric", "kit", "reference", "kit / ref", "target", "result"]


def markdown(report: dict) -> str:
    """Return the report as Markdown: header (date, machine), one table, targets and setups."""
    s = report["summary"]
    targets = {t["key"]: t for t in report["targets"]}
    rows = [row for area in ("sft", "dpo") for row in _train_rows(area, s[area], targets)]
    rows += _gen_rows(s["gen"], targets) if s["gen"] else []
    lines = _header(report) + [""] + ([table(HEAD, rows), ""] if rows else [])
    if s.get("main"):
        lines += _main_lines(s["main"], targets) + [""]
    if s.get("scale"):
        lines += _scale_lines(s["scale"], report["settings"]) + [""]
    if set(report["settings"].get("areas") or AREAS_WITH_TARGETS) & AREAS_WITH_TARGETS:  # not the scale area alone
        lines += _target_lines(report)
    lines.append("Setups: " + "; ".join(_setups(s)) + ".")
    return "\n".join(lines) + "\n"


def _target_lines(report: dict) -> list[str]:
    lines = ["Targets: " + "; ".join(f"{t['label']}: {_verdict(t)}" + (f" (profile: {t['profile']})" if t.get("profile") else "")
                                     for t in report["targets"]) + "."]
    if report.get("mode") == "quick":
        lines.append("Quick mode: short rows, small batches and few steps, where per-step overhead weighs more than "
                     "at the recipe's sizes; judge the targets on a full run.")
    return lines


def _header(report: dict) -> list[str]:
    """Return the lines above the table: date, machine, model, reference, matmul peak."""
    m, s, model, peak = report["machine"], report["summary"], report["model"], report["peak_summary"]
    threads = next((x.get("threads") for x in (s["sft"]["kit"], s["dpo"]["kit"], s["gen"], s.get("scale")) if x), None)
    kit_set = report["settings"].get("kit_set") or {}
    reference = ("Reference: the kit as shipped (training A/B of --kit-set "
                 + ", ".join(f"{k}={v}" for k, v in kit_set.items()) + "; targets not evaluated)."
                 if report["settings"].get("ref") == "kit" else
                 "Reference: plain TRL (fp32 from_pretrained, SFTConfig/DPOConfig defaults, LoRA r16 all-linear, DPO "
                 "with a separate reference copy) and one-by-one `model.generate`.")
    lines = [
        f"### stylealign bench ({report['mode']}) — {report['date']}",
        "",
        f"Machine: {cpu_line(m)}, {m['cores']} cores, {m['memory_gb']} GiB"
        + (f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU")
        + f"; torch {m['torch']}, transformers {m['transformers']}, trl {m['trl']}, peft {m['peft']}; "
        f"torch threads {threads}" + "".join(f", {k}={v}" for k, v in (report.get("env") or {}).items())
        + f"; load average {report['load_before']} → {report['load_after']}.",
    ]
    if not peak:  # the scale area alone: no matmul peak measured, --model not trained
        return lines + [f"Kit recipe `{report['recipe']}`; bench wall time {report['wall_seconds']:.0f} s."]
    return lines + [
        f"Model: {model['name']} ({model['dims']['layers']} layers, hidden {model['dims']['hidden']}, "
        f"{model['linear_params'] / 1e6:.1f}M linear weights); recipe `{report['recipe']}`; "
        f"bench wall time {report['wall_seconds']:.0f} s.",
        reference,
        f"Matmul peak now (median of {(peak.get('bf16') or {}).get('trials', 0)} trials): "
        f"fp32 {_n((peak.get('fp32') or {}).get('median_gflops'))} GFLOP/s, "
        f"bf16 {_n((peak.get('bf16') or {}).get('median_gflops'))} GFLOP/s.",
    ]


def _train_rows(area: str, part: dict, targets: dict) -> list[list]:
    """Return the table rows of one training area: speed, (DPO) pairs and copies, memory, step time, FLOP/s."""
    if not part["kit"] and not part["ref"]:
        return []
    kit, ref, label = part["kit"] or {}, part["ref"] or {}, area.upper()
    speed, mem_t = targets[f"{area}_speed"], targets.get("sft_memory") if area == "sft" else None
    rows = [[label, "non-padding tokens/s", _n(kit.get("tokens_per_s")), _n(ref.get("tokens_per_s")),
             _n(part["speed_ratio"], 2, "×"), f"≥ {speed['threshold']}×", _verdict(speed)]]
    if area == "dpo":
        rows.append([label, "pairs/s", _n(kit.get("pairs_per_s"), 3), _n(ref.get("pairs_per_s"), 3),
                     _n(part.get("pairs_ratio"), 2, "×"), "", ""])
        rows.append([label, "model copies in memory", kit.get("model_copies", "—"), ref.get("model_copies", "—"),
                     "", "= 1", _verdict(targets["dpo_copies"])])
    rows.append([label, f"peak memory, MiB ({kit.get('memory_kind') or ref.get('memory_kind')})",
                 _n(kit.get("peak_memory_mb")), _n(ref.get("peak_memory_mb")), _n(part["memory_ratio"], 2, "×"),
                 "≤ 0.8×" if mem_t else "", _verdict(mem_t) if mem_t else ""])
    rows.append([label, "step time, s (tokens/step)", f"{_n(kit.get('step_seconds'), 2)} ({_n(kit.get('tokens_per_step'), 0)})",
                 f"{_n(ref.get('step_seconds'), 2)} ({_n(ref.get('tokens_per_step'), 0)})", "", "", ""])
    rows.append([label, "untimed warm-up, s per run (a compile happens here)",
                 ", ".join(_n(x) for x in kit.get("warmup_seconds") or []) or "—",
                 ", ".join(_n(x) for x in ref.get("warmup_seconds") or []) or "—", "", "", ""])
    rows.append([label, "model GFLOP/s (of fp32 / bf16 peak)",
                 f"{_n(kit.get('gflops_per_s'))} ({_pct(kit.get('util_fp32'))} / {_pct(kit.get('util_bf16'))})",
                 f"{_n(ref.get('gflops_per_s'))} ({_pct(ref.get('util_fp32'))} / {_pct(ref.get('util_bf16'))})",
                 "", "reported" if area == "sft" else "", ""])
    return rows


def _gen_rows(g: dict, targets: dict) -> list[list]:
    """Return the table rows of the generation arm: evaluation throughput and the arena's two panes."""
    p1, p2 = g["pane1"], g["pane2"]
    return [
        ["Evaluation", f"answers/s ({g['answers']} answers, ≤ {g['max_new_tokens']} new tokens; one by one: the first "
                       f"{g['one_by_one'].get('answers')})",
         _n(g["batched"]["answers_per_s"], 3), _n(g["one_by_one"]["answers_per_s"], 3), _n(g["speed_ratio"], 2, "×"),
         "≥ 4×", _verdict(targets["eval_speed"])],
        ["Evaluation", "generated tokens/s", _n(g["batched"]["tokens_per_s"]), _n(g["one_by_one"]["tokens_per_s"]),
         "", "", ""],
        ["Evaluation", f"answers/s vs 16-row batches, PEFT's per-row routing (batch {g['batch_size']} vs 16)",
         _n(g["batched"]["answers_per_s"], 3), _n((g.get("former") or {}).get("answers_per_s"), 3),
         _n(g.get("decode_ratio"), 2, "×"), "≥ 1.5×", _verdict(targets["eval_decoding"])],
        ["Arena", "time to first token, s (2 panes vs 1)", _n(p2["ttft_s"], 3), _n(p1["ttft_s"], 3),
         _n(arith.ratio(p2["ttft_s"], p1["ttft_s"]), 2, "×"), "", ""],
        ["Arena", "tokens/s per pane (2 panes vs 1)", _n(p2["tokens_per_s_per_pane"]), _n(p1["tokens_per_s_per_pane"]),
         "", "", ""],
        ["Arena", "time per decode step, s (2 panes vs 1)", _n(p2["seconds_per_step"], 3), _n(p1["seconds_per_step"], 3),
         _n(g["two_pane_time_ratio"], 2, "×"), "≤ 1.6×", _verdict(targets["arena_two_panes"])],
    ]


def _main_lines(m: dict, targets: dict) -> list[str]:
    """Return the main job's per-phase table and its two targets."""
    rows = [["  " * p["depth"] + p["name"], _n(p["wall_s"]), _n(p["cpu_s"]), _n(p["peak_rss_mb"], 0),
             _n(p["rss_end_mb"], 0)] for p in m["phases"]]
    rows.append(["**main job**", _n(m["wall_s"]), _n(m["cpu_s"]), _n(m["peak_rss_mb"], 0), ""])
    what = ("the shipped recipe" if m["shipped_recipe"] else
            "a cut-down recipe (quick mode or another model): not the real job, targets not evaluated")
    verdict = lambda key: _verdict(targets.get(key))  # noqa: E731
    return [f"Main job (`stylealign quickstart --no-arena`, trained from scratch, {what}; load average at its end "
            f"{m.get('load_average_end')}):", "",
            table(["phase", "wall s", "CPU s (all threads)", "peak RSS, MiB", "RSS at end, MiB"], rows), "",
            f"Main job targets: wall ≤ 600 s: {verdict('main_wall')} ({m['wall_s']:.0f} s); peak RSS ≤ 3,072 MiB: "
            f"{verdict('main_memory')} ({m['peak_rss_mb']:,.0f} MiB)."]


SCALE_HEAD = ["size", "parameters", "seq len", "kit tokens/s", "{ref} tokens/s", "kit / {ref}", "kit {mem}, MiB",
              "{ref} {mem}, MiB", "tokens/s vs smallest (kit / {ref})", "{mem} vs smallest (kit / {ref})"]


def _params(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.0f}M"


def _scale_lines(scale: dict, settings: dict) -> list[str]:
    """Return the "Scaling" table: per (size, seq len) kit and reference SFT speed and peak memory, and both as
    multiples of the smallest size's row at the same seq len."""
    ref = "TRL" if settings.get("ref") != "kit" else "ref (kit)"
    mem = "peak RSS" if scale["memory_kind"] == "process peak RSS" else "peak CUDA memory"
    rows = []
    for r in scale["rows"]:
        g = r["growth"]
        rows.append([r["shape"], _params(r['params']), r["seq_len"], _n(r["kit_tokens_per_s"]),
                     _n(r["ref_tokens_per_s"]), _n(r["speed_ratio"], 2, "×"), _n(r["kit_peak_memory_mb"], 0),
                     _n(r["ref_peak_memory_mb"], 0),
                     f"{_n(g['kit_tokens_per_s'], 2, '×')} / {_n(g['ref_tokens_per_s'], 2, '×')}",
                     f"{_n(g['kit_peak_memory_mb'], 2, '×')} / {_n(g['ref_peak_memory_mb'], 2, '×')}"])
    head = [h.format(ref=ref, mem=mem) for h in SCALE_HEAD]
    return [f"Scaling (SFT, kit vs {ref}, random-init Llamas with the embedded tokenizer, rows stitched to the seq "
            f"len; batch {settings.get('scale_batch')}, {settings.get('warmup')} warm-up + "
            f"{settings.get('scale_steps')} timed steps, one run per cell; memory: {scale['memory_kind']} of each "
            "arm's own process; \"vs smallest\": multiple of the smallest size's figure at the same seq len):", "",
            table(head, rows)]


def _setups(s: dict) -> list[str]:
    """Return one phrase per arm: its weights, dtype and the fast paths it ran with."""
    found = [(f"{area} {arm}", (s[area][arm] or {}).get("setup")) for area in ("sft", "dpo") for arm in ("kit", "ref")]
    found += [(f"scale {arm}", st) for arm, st in ((s.get("scale") or {}).get("setup") or {}).items()]
    setups = [f"{name}: {st.get('quant')}/{st.get('dtype')}"
              + (", bf16 autocast" if st.get("autocast_bf16") else "")
              + (", padding-free" if st.get("padding_free") else "")
              + (", gradient checkpointing" if st.get("gradient_checkpointing") else "")
              + "".join(f", {v}" for v in st.get("fast_paths") or []) for name, st in found if st]
    if s["gen"]:
        setups.append(f"generation: {s['gen']['quant']}/{s['gen']['dtype']}, batch {s['gen']['batch_size']}")
    return setups


def write_report(report: dict, out: Path) -> None:
    write_json(out / "report.json", report)
    write_atomic(out / "report.md", markdown(report))
