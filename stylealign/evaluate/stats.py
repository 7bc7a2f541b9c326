"""Seeded bootstrap statistics: CIs of a mean and of a paired difference, grouped summaries.

Percentile bootstrap over items (prompts). Pairs where either side is nan (metric undefined, e.g.
the assertiveness of an answer with no hedges and no boosters) are dropped and `n` says how many
remained.
"""

from __future__ import annotations

import math

import numpy as np


def _clean(x) -> list | None:
    """Return a JSON-friendly float (None for nan/inf)."""
    return None if x is None or not math.isfinite(float(x)) else float(x)


def bootstrap_ci(values, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """Return the (low, high) percentile-bootstrap CI of the mean of `values` (nan-free); (nan, nan) if empty."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))


def mean_ci(values, n_boot: int = 2000, seed: int = 0) -> dict:
    """Return {"mean", "ci": [lo, hi], "n"} for the finite entries of `values`."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    lo, hi = bootstrap_ci(x, n_boot, seed=seed)
    return {"mean": _clean(x.mean()) if x.size else None, "ci": [_clean(lo), _clean(hi)], "n": int(x.size)}


def paired_diff(baseline, adapter, n_boot: int = 2000, seed: int = 0) -> dict:
    """Return baseline and adapter means and the bootstrap CI of the paired difference (adapter - baseline).

    Result: {"baseline": mean, "adapter": mean, "diff": mean diff, "ci": [lo, hi], "n": pairs}.
    Means are over the same (paired, both-finite) items so they match the difference. When the
    baseline is undefined everywhere (an adapter-only metric such as drift), "baseline" and "diff"
    are None and "ci" is the CI of the adapter mean.
    """
    b, a = np.asarray(baseline, dtype=float), np.asarray(adapter, dtype=float)
    if not np.isfinite(b).any():
        one = mean_ci(a, n_boot, seed)
        return {"baseline": None, "adapter": one["mean"], "diff": None, "ci": one["ci"], "n": one["n"]}
    keep = np.isfinite(b) & np.isfinite(a)
    b, a = b[keep], a[keep]
    if not keep.any():
        return {"baseline": None, "adapter": None, "diff": None, "ci": [None, None], "n": 0}
    lo, hi = bootstrap_ci(a - b, n_boot, seed=seed)
    return {"baseline": _clean(b.mean()), "adapter": _clean(a.mean()), "diff": _clean((a - b).mean()),
            "ci": [_clean(lo), _clean(hi)], "n": int(keep.sum())}


def grouped_paired(rows: list[dict], metrics: list[str], base_key: str, var_key: str,
                   groups: tuple[str, ...] = ("language", "category"), n_boot: int = 2000, seed: int = 0) -> dict:
    """Return {"overall": {metric: paired_diff}, "by_<group>": {value: {metric: paired_diff}}}.

    `rows` are per-prompt dicts holding row[base_key][metric] and row[var_key][metric] plus the
    group fields; metrics with no finite pair in a group are left out of that group.
    """
    def block(sub: list[dict]) -> dict:
        out = {}
        for m in metrics:
            res = paired_diff([r[base_key].get(m, math.nan) for r in sub],
                              [r[var_key].get(m, math.nan) for r in sub], n_boot, seed)
            if res["n"]:
                out[m] = res
        return out

    result = {"overall": block(rows)}
    for g in groups:
        values = sorted({str(r.get(g)) for r in rows})
        result[f"by_{g}"] = {v: block([r for r in rows if str(r.get(g)) == v]) for v in values}
    return result
