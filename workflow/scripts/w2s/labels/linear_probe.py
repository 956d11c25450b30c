"""Linear probes for Burns et al.'s saliency analyses: how much of a label is linearly readable from a
model's features, with the regularisation chosen on a validation split."""
from __future__ import annotations

import numpy as np

from w2s.scoring import soft_cross_entropy
from w2s.labels.probes import fit_soft_logreg


def fit_linear_probe(train_x: np.ndarray, train_y: np.ndarray, val_x: np.ndarray, val_y: np.ndarray,
                     Cs: list[float], max_iter: int = 1000):
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
