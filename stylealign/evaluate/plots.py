"""PNG plots for the report: marker distributions (baseline vs adapters) and the strength sweep."""

from __future__ import annotations

import math
from pathlib import Path

DISTRIBUTION_METRICS = ("p_persona", "hedge_rate", "boilerplate_rate", "booster_rate", "length", "sent_len_mean")
SWEEP_METRICS = ("p_persona", "hedge_rate", "verdict_first", "truth_right", "ppl_ratio")


def _pyplot():
    """Return matplotlib.pyplot on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Save `fig` to `path` atomically (temp file + rename) and close it."""
    import io

    from stylealign.files import write_atomic

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return write_atomic(path, buf.getvalue())


def marker_distributions(features: dict[str, list[dict]], languages: list[str], path: Path) -> Path | None:
    """Write box plots of key markers per language (rows) and metric (columns), one box per model; return the path."""
    plt = _pyplot()
    langs = sorted(set(languages))
    metrics = [m for m in DISTRIBUTION_METRICS
               if any(not math.isnan(f.get(m, math.nan)) for fs in features.values() for f in fs)]
    if not metrics or not langs:
        return None
    fig, axes = plt.subplots(len(langs), len(metrics), figsize=(3.2 * len(metrics), 3.2 * len(langs)), squeeze=False,
                             layout="constrained")
    labels = list(features)
    for r, lang in enumerate(langs):
        for c, m in enumerate(metrics):
            data = [[f[m] for f, lg in zip(features[lab], languages) if lg == lang and not math.isnan(f.get(m, math.nan))]
                    for lab in labels]
            ax = axes[r][c]
            ax.boxplot([d or [math.nan] for d in data], tick_labels=[_short(x) for x in labels], showmeans=True)
            ax.set_title(f"{m} [{lang}]", fontsize=9)
            ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    fig.suptitle("Style markers: baseline vs adapter (rates per 100 words / 1,000 chars)", fontsize=10)
    return _save(fig, path)


def _short(label: str, n: int = 18) -> str:
    return label if len(label) <= n else label[: n - 1] + "…"


def sweep_points(report: dict) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """Return {adapter: {metric: [(strength, adapter mean)]}} with strength 0 = the baseline mean."""
    out: dict = {}
    for v in report["variants"]:
        overall = report["comparisons"][v["label"]]["overall"]
        ret = ((report.get("retention") or {}).get("variants") or {}).get(v["label"]) or {}
        for m in SWEEP_METRICS:
            if m == "ppl_ratio":
                base, val = 1.0, ret.get("ppl_ratio")
            else:
                base, val = (overall.get(m) or {}).get("baseline"), (overall.get(m) or {}).get("adapter")
            pts = out.setdefault(v["adapter"], {}).setdefault(m, [])
            if val is not None:
                if base is not None and not any(s == 0.0 for s, _ in pts):
                    pts.append((0.0, base))
                pts.append((v["strength"], val))
    return out


def strength_sweep(report: dict, path: Path) -> Path | None:
    """Write metric-vs-LoRA-strength curves (one line per adapter) when an adapter ran at 2+ strengths."""
    points = sweep_points(report)
    if not any(len({s for s, _ in pts}) > 2 for metrics in points.values() for pts in metrics.values()):
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(SWEEP_METRICS), figsize=(3.3 * len(SWEEP_METRICS), 3.2), squeeze=False,
                             layout="constrained")
    for c, m in enumerate(SWEEP_METRICS):
        ax = axes[0][c]
        for adapter, metrics in points.items():
            pts = sorted(metrics.get(m, []))
            if pts:
                ax.plot([s for s, _ in pts], [y for _, y in pts], marker="o", label=_short(adapter))
        ax.set_title(m, fontsize=9)
        ax.set_xlabel("LoRA strength (0 = base)", fontsize=8)
    axes[0][0].legend(fontsize=7)
    fig.suptitle("Strength sweep", fontsize=10)
    return _save(fig, path)
