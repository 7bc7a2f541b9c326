"""Training plots: SFT loss, and DPO reward margin and accuracy, from the trainers' log history."""

from __future__ import annotations

from pathlib import Path


def series(history: list[dict], key: str) -> tuple[list[float], list[float]]:
    """Return (steps, values) of `key` in a Trainer log history."""
    points = [(e["step"], e[key]) for e in history if key in e and "step" in e]
    return [p[0] for p in points], [p[1] for p in points]


def training_plot(histories: dict[str, list[dict]], out: Path, selection: dict | None = None) -> Path:
    """Write a PNG with one panel per stage (SFT loss; DPO margin and accuracy), plus the checkpoint
    candidates' probe scores when selection ran, and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cands = (selection or {}).get("candidates") or []
    panels = len(histories) + bool(cands)
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 3.6), squeeze=False)
    if cands:
        candidates_panel(axes[0][-1], selection)
    for ax, (stage, history) in zip(axes[0], histories.items()):
        if stage == "sft":
            ax.plot(*series(history, "loss"), label="train loss")
            ax.plot(*series(history, "eval_loss"), "o", label="eval loss")
            ax.set_ylabel("loss")
        else:
            ax.plot(*series(history, "rewards/margins"), label="reward margin")
            twin = ax.twinx()
            twin.plot(*series(history, "rewards/accuracies"), color="tab:green", label="reward accuracy")
            twin.set_ylim(0, 1.05)
            twin.set_ylabel("accuracy")
            ax.set_ylabel("chosen - rejected reward")
        ax.set_title(stage.upper())
        ax.set_xlabel("step")
        ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(out)
    return out


PROBE_LINES = (("verdict_first", "verdict-first"), ("repetitive", "repetitive"), ("top_opener", "top opener"),
               ("yes_share", "yes-share"))


def candidates_panel(ax, selection: dict) -> None:
    """Plot each checkpoint candidate's greedy probe scores (the base model's as dotted lines) and mark
    the published one."""
    cands, base = selection["candidates"], selection.get("baseline") or {}
    labels = [f"{c['stage']}:{c['step']}" for c in cands]
    for key, name in PROBE_LINES:
        values = [c["scores"].get(key) for c in cands]
        line, = ax.plot(range(len(cands)), [float("nan") if v is None else v for v in values], marker="o", label=name)
        if base.get(key) is not None:
            ax.axhline(base[key], color=line.get_color(), linestyle=":", linewidth=1)
    published = (selection.get("selected") or {}).get("path")  # none while the run still trains
    chosen = next((i for i, c in enumerate(cands) if published and c["path"] == published), None)
    if chosen is not None:
        ax.axvline(chosen, color="black", linewidth=1)
        ax.annotate("published", (chosen, 1.02), ha="center", fontsize=8)
    ax.set_xticks(range(len(cands)), labels, rotation=45, fontsize=7)
    ax.set_ylim(-0.02, 1.1)
    ax.set_title("checkpoints, greedy probe (base dotted)")
    ax.legend(loc="lower left", fontsize=7)
