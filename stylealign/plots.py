"""Training plots: SFT loss, and DPO reward margin and accuracy, from the trainers' log history."""

from __future__ import annotations

from pathlib import Path


def series(history: list[dict], key: str) -> tuple[list[float], list[float]]:
    """Return (steps, values) of `key` in a Trainer log history."""
    points = [(e["step"], e[key]) for e in history if key in e and "step" in e]
    return [p[0] for p in points], [p[1] for p in points]


def training_plot(histories: dict[str, list[dict]], out: Path) -> Path:
    """Write a PNG with one panel per stage (SFT loss; DPO margin and accuracy) and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(histories), figsize=(5.5 * len(histories), 3.6), squeeze=False)
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
