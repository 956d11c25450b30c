"""Linear probes for Burns et al.'s saliency analyses: how much of a label is linearly readable from a
model's features, with the regularisation chosen on a validation split."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from w2s.labels.probes import fit_soft_logreg
from w2s.labels.tables import weak_label_table
from w2s.layout import LABELLED_SPLITS
from w2s.scoring import soft_cross_entropy


def fit_linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    Cs: list[float],
    max_iter: int = 1000,
):
    """Fit a soft-label logistic regression per C on train; keep the one with the lowest val cross-entropy.

    Returns (fitted pipeline, chosen C, {C: val cross-entropy}).
    """
    if not Cs:
        raise ValueError("give at least one regularisation strength C")
    scores, best = {}, None
    for C in Cs:
        model = fit_soft_logreg(train_x, np.asarray(train_y, dtype=np.float64), C=C, max_iter=max_iter)
        scores[C] = soft_cross_entropy(val_y, model.predict_proba(val_x)[:, 1])
        if best is None or scores[C] < scores[best[0]]:
            best = (C, model)
    return best[1], best[0], scores


def probe_targets(
    splits: Mapping[str, pd.DataFrame], probe_labels: str, weak: Mapping[str, pd.DataFrame]
) -> dict[str, np.ndarray]:
    """The labels a saliency probe is fit (strong_train) and selected (val) on: ground truth, or the weak
    soft labels."""
    if probe_labels == "ground_truth":
        return {n: splits[n]["label"].to_numpy(dtype=np.float64) for n in LABELLED_SPLITS}
    return {n: weak_label_table(splits[n], weak[n])["soft_label"].to_numpy() for n in LABELLED_SPLITS}


def probe_and_predict(
    features: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray], test: pd.DataFrame, saliency: dict
) -> tuple[pd.DataFrame, dict]:
    """Fit the saliency probe on strong_train's features, choose C on val's, predict test: the predictions
    and what was chosen."""
    model, C, scores = fit_linear_probe(
        features["strong_train"], targets["strong_train"], features["val"], targets["val"], saliency["C"]
    )
    pred = pd.DataFrame({"id": test["id"].to_numpy(), "soft_pred": model.predict_proba(features["test"])[:, 1]})
    return pred, {
        "probe_labels": saliency["probe_labels"],
        "C": C,
        "val_cross_entropy": {str(c): v for c, v in scores.items()},
    }
