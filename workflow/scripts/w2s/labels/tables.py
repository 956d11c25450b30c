"""Label tables, the contract between label sources and training: (id, text, soft_label) per example.

A student's table is built from some model's soft predictions joined to a split's texts; the split's
ground-truth column is never carried over, so none can reach a student.
"""

from __future__ import annotations

import pandas as pd


def ground_truth_labels(split: pd.DataFrame) -> pd.DataFrame:
    """A split table (id, text, label) as a training table with hard ground-truth soft labels."""
    return pd.DataFrame({"id": split["id"], "text": split["text"], "soft_label": split["label"].astype(float)})


def weak_label_table(split: pd.DataFrame, weak_preds: pd.DataFrame) -> pd.DataFrame:
    """Attach a supervisor's soft predictions to a split's texts; the ground-truth column is left out."""
    merged = split[["id", "text"]].merge(weak_preds[["id", "soft_pred"]], on="id", how="left", validate="1:1")
    if merged["soft_pred"].isna().any():
        raise ValueError("weak predictions are missing for some examples of the split")
    return merged.rename(columns={"soft_pred": "soft_label"})


def mean_predictions(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Per-id mean soft prediction of several supervisors, which must all cover the same examples."""
    ids = set(tables[0]["id"])
    if any(set(t["id"]) != ids for t in tables[1:]):
        raise ValueError("ensemble members predicted on different examples; rerun their weak models")
    return pd.concat(tables)[["id", "soft_pred"]].groupby("id", as_index=False, sort=False)["soft_pred"].mean()
