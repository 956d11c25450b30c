"""Test metrics from probabilities, and the performance gap recovered (PGR)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd


def accuracy(labels: np.ndarray, p1: np.ndarray) -> float:
    return float(np.mean((np.asarray(p1) > 0.5) == (np.asarray(labels) == 1)))


def auroc(labels: np.ndarray, p1: np.ndarray) -> float:
    # Imported here: every training job imports this module for its loss alone, and scikit-learn's metrics
    # would add 0.4 s to each job's start-up.
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float(roc_auc_score(labels, p1))


def soft_cross_entropy(target: np.ndarray, p1: np.ndarray) -> float:
    """Mean cross-entropy of predicted p(class 1) against soft (or hard) target probabilities."""
    p1 = np.clip(np.asarray(p1, dtype=np.float64), 1e-7, 1 - 1e-7)
    target = np.asarray(target, dtype=np.float64)
    return float(-(target * np.log(p1) + (1 - target) * np.log(1 - p1)).mean())


def pgr(student: float, weak: float, ceiling: float) -> float:
    """(student - weak) / (ceiling - weak); NaN when the ceiling does not differ from the weak model,
    because the gap to recover is then empty and any ratio would be noise."""
    gap = ceiling - weak
    if not math.isfinite(gap) or abs(gap) < 1e-12:
        return float("nan")
    return (student - weak) / gap


def _aligned(test: pd.DataFrame, preds: pd.DataFrame, who: str) -> np.ndarray:
    if set(preds["id"]) != set(test["id"]) or len(preds) != len(test):
        raise ValueError(f"{who} predictions do not cover exactly the test split's ids")
    return preds.set_index("id").loc[test["id"], "soft_pred"].to_numpy()


def cell_metrics(test: pd.DataFrame, weak: pd.DataFrame, ceiling: pd.DataFrame, student: pd.DataFrame) -> dict:
    """Accuracy and AUROC of weak, ceiling and student on the test split, and PGR on both."""
    y = test["label"].to_numpy()
    out: dict[str, float] = {"n_test": int(len(test))}
    for who, preds in (("weak", weak), ("ceiling", ceiling), ("student", student)):
        p = _aligned(test, preds, who)
        out[f"{who}_acc"] = accuracy(y, p)
        out[f"{who}_auroc"] = auroc(y, p)
    for m in ("acc", "auroc"):
        out[f"pgr_{m}"] = pgr(out[f"student_{m}"], out[f"weak_{m}"], out[f"ceiling_{m}"])
    return out
