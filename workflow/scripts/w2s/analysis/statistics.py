"""Seed-level aggregation of test metrics with two-level bootstrap intervals, and the median PGR over tasks."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from w2s.analysis.imitation import RATES, SIZES, counts, rate
from w2s.analysis.pgr import check_min_gap, gated_pgr, pgr_interval
from w2s.scoring import accuracy, auroc

KEYS = ["task", "weak", "strong", "intervention"]
WHO = ("weak", "ceiling", "student")
METRICS = {"acc": accuracy, "auroc": auroc}
# Differences reported with paired intervals: the student's gain over its supervisor, and what is left to the
# ceiling.
GAPS = {"student_minus_weak": ("student", "weak"), "ceiling_minus_student": ("ceiling", "student")}


def auroc_rows(labels: np.ndarray, p: np.ndarray) -> np.ndarray:
    """AUROC of each row of (labels, p) at once, via the Mann-Whitney rank sum with average ranks for
    ties, which equals roc_auc_score; one sklearn call per draw would dominate the runtime."""
    n_pos = labels.sum(axis=1)
    n_neg = labels.shape[1] - n_pos
    ranks = rankdata(p, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = ((ranks * labels).sum(axis=1) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    # A draw holding one class has no AUROC, as in w2s.scoring.auroc.
    return np.where((n_pos > 0) & (n_neg > 0), out, np.nan)


def _interval(reps: np.ndarray, level: float) -> tuple[float, float]:
    reps = reps[np.isfinite(reps)]
    if reps.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(reps, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(lo), float(hi)


def _group_rng(seed: int, key: tuple) -> np.random.Generator:
    # Keyed on the group itself (crc32, not hash(), which is salted per process) so one group's
    # interval does not change when other groups are added to or removed from the table.
    return np.random.default_rng([seed, zlib.crc32(repr(key).encode())])


def _aggregate_group(rows: pd.DataFrame, rng: np.random.Generator, n_boot: int, level: float, min_gap: float) -> dict:
    labels = [np.asarray(y).astype(int) for y in rows["labels"]]
    preds = {who: [np.asarray(p, dtype=float) for p in rows[f"p_{who}"]] for who in WHO}
    for i, y in enumerate(labels):
        if any(preds[who][i].shape != y.shape or y.ndim != 1 for who in WHO):
            raise ValueError(f"seed {rows['seed'].iloc[i]}: labels and predictions are not aligned 1-d arrays")
    k = len(labels)

    out: dict[str, float] = {"n_seeds": k}
    means = {
        (who, m): float(np.mean([f(y, p) for y, p in zip(labels, preds[who])]))
        for who in WHO
        for m, f in METRICS.items()
    }
    per_seed = [counts(y, *(preds[who][i] for who in WHO)) for i, y in enumerate(labels)]

    # reps[(who, m)][b, i]: metric on the i-th seed drawn in replicate b, on its own example resample;
    # events[name][b, i] and sizes[name][b, i]: that resample's counts of each imitation rate.
    seed_draw = rng.integers(0, k, size=(n_boot, k))
    reps = {key: np.empty((n_boot, k)) for key in means}
    events = {name: np.empty((n_boot, k)) for name in RATES}
    sizes = {name: np.empty((n_boot, k)) for name in RATES}
    for s, y in enumerate(labels):
        at = seed_draw == s
        idx = rng.integers(0, len(y), size=(int(at.sum()), len(y)))
        ys = y[idx]
        # The same idx for all three models, so their differences (and hence PGR) are paired.
        drawn = {who: preds[who][s][idx] for who in WHO}
        for who, ps in drawn.items():
            reps[(who, "acc")][at] = ((ps > 0.5) == (ys == 1)).mean(axis=1)
            reps[(who, "auroc")][at] = auroc_rows(ys, ps)
        for name, (hits, size) in counts(ys, *drawn.values()).items():
            events[name][at], sizes[name][at] = hits, size
    rep_means = {key: r.mean(axis=1) for key, r in reps.items()}

    for who in WHO:
        for m in METRICS:
            out[f"{who}_{m}"] = means[(who, m)]
            out[f"{who}_{m}_lo"], out[f"{who}_{m}_hi"] = _interval(rep_means[(who, m)], level)
    # Paired differences (the same seeds and test examples in every draw), which separate two models where
    # their own intervals, each wide with the spread between seeds, may overlap.
    for m in METRICS:
        for name, (hi, lo) in GAPS.items():
            out[f"{name}_{m}"] = means[(hi, m)] - means[(lo, m)]
            out[f"{name}_{m}_lo"], out[f"{name}_{m}_hi"] = _interval(rep_means[(hi, m)] - rep_means[(lo, m)], level)
    for m in METRICS:
        # PGR of the means, not the mean of per-seed PGRs: a seed with a tiny gap would otherwise dominate.
        out[f"pgr_{m}"], reason = gated_pgr(*(means[(who, m)] for who in ("student", "weak", "ceiling")), min_gap)
        boot = [rep_means[(who, m)] for who in ("student", "weak", "ceiling")]
        out[f"pgr_{m}_lo"], out[f"pgr_{m}_hi"], undefined = pgr_interval(*boot, min_gap, level)
        out[f"pgr_{m}_undefined"], out[f"pgr_{m}_draws_undefined"] = reason, undefined
    # Rates pool their counts over the seeds (and a draw's seeds), so a seed with a larger subset weighs
    # more; a draw in which the subset is empty has no rate and is left out of the interval.
    for name, size in RATES.items():
        out[name] = float(rate(sum(c[name][0] for c in per_seed), sum(c[name][1] for c in per_seed)))
        out[f"{name}_lo"], out[f"{name}_hi"] = _interval(rate(events[name].sum(axis=1), sizes[name].sum(axis=1)), level)
        if size in SIZES:
            out[size] = int(sum(c[name][1] for c in per_seed))
    return out


def cell_predictions(cells: list[dict]) -> pd.DataFrame:
    """One row per cell and seed with its test labels and the weak, ceiling and student test predictions
    (aligned to the test split's order), read from the `<who>_path` entries of w2s.layout.prediction_paths."""
    rows = []
    for cell in cells:
        test = pd.read_parquet(cell["test_path"])
        preds = {
            who: pd.read_parquet(cell[f"{who}_path"]).set_index("id").loc[test["id"], "soft_pred"].to_numpy()
            for who in ("weak", "ceiling", "student")
        }
        rows.append(
            {
                **{k: cell[k] for k in KEYS},
                "seed": cell["seed"],
                "labels": test["label"].to_numpy(),
                **{f"p_{who}": p for who, p in preds.items()},
            }
        )
    return pd.DataFrame(rows)


def aggregate(
    cells: pd.DataFrame, *, min_gap: float, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """One row per KEYS group: seed-mean metrics of weak, ceiling and student, PGR of those means (undefined,
    with the reason, where ceiling - weak is not above `min_gap`), the imitation rates of
    w2s.analysis.imitation pooled over seeds with their subsets' sizes summed, and percentile intervals from
    a bootstrap over seeds and, within each drawn seed, over test examples."""
    min_gap = check_min_gap(min_gap)
    rows = []
    for key, group in cells.sort_values(KEYS + ["seed"]).groupby(KEYS, sort=True):
        stats = _aggregate_group(group, _group_rng(seed, key), n_boot, level, min_gap)
        rows.append({**dict(zip(KEYS, key)), **stats})
    return pd.DataFrame(rows)


def median_pgr(agg: pd.DataFrame, metric: str = "acc") -> pd.DataFrame:
    """Median over tasks of pgr_{metric} per (weak, strong, intervention). Tasks with NaN PGR (no gap to
    recover) are left out: n_tasks counts the tasks the median was taken over, n_tasks_undefined the others."""
    col = f"pgr_{metric}"
    keys = ["weak", "strong", "intervention"]
    # count and median both skip NaN, so a group whose tasks all lack a gap stays, with n_tasks 0.
    out = agg.groupby(keys, sort=True)[col].agg(n_tasks="count", n_all="size", median="median").reset_index()
    out["n_tasks_undefined"] = out["n_all"] - out["n_tasks"]
    out = out.rename(columns={"median": f"median_{col}"})
    return out[keys + ["n_tasks", "n_tasks_undefined", f"median_{col}"]]
