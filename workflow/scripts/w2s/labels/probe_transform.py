"""Student labels cleaned by a probe on the pretrained strong model's frozen activations.

The probe is fit on the weak labels of strong_train and val together (both are weak-labelled; neither
carries ground truth here), each point's prediction coming from a probe that did not see its own label.
Filtering drops the `contamination` fraction that disagrees most with its weak label, from the student's
training and validation data alike; relabelling replaces the weak labels by the probe's predictions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from w2s.data.activations import features_for
from w2s.labels.probes import apply_probe, probe_scores


def probe_label_tables(
    train: pd.DataFrame, val: pd.DataFrame, act_ids: list[str], acts: dict[int, np.ndarray], probe: dict
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """(train labels, val labels, probe prediction per input row of train then val)."""
    pool = pd.concat([train, val], ignore_index=True)
    params = {k: v for k, v in probe.items() if k not in ("name", "use")}
    keep, labels, pred = apply_probe(
        probe["name"], probe["use"], features_for(pool["id"], act_ids, acts), pool["soft_label"].to_numpy(), **params
    )
    out = pool.assign(soft_label=labels)
    n = len(train)
    return (out.iloc[:n][keep[:n]].reset_index(drop=True), out.iloc[n:][keep[n:]].reset_index(drop=True), pred)


def probe_report(
    train: pd.DataFrame,
    val: pd.DataFrame,
    pred: np.ndarray,
    kept_train: pd.DataFrame,
    kept_val: pd.DataFrame,
    ground_truth: pd.Series,
) -> dict:
    """How good the probe is (vs weak labels and vs ground truth) and how much a filter dropped.

    Ground truth is used here for reporting only; it never enters the label tables.
    """
    weak = pd.concat([train["soft_label"], val["soft_label"]], ignore_index=True).to_numpy()
    scores = probe_scores(pred, weak, ground_truth.to_numpy())
    return {
        **scores,
        "dropped_frac_train": 1 - len(kept_train) / len(train),
        "dropped_frac_val": 1 - len(kept_val) / len(val),
    }
