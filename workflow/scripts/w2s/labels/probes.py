"""Probe label transforms on frozen strong-model features, fit on the weak labels of strong_train.

A probe predicts p(class 1) for every training point without having seen that point's own label; the
prediction either filters (drop the points that disagree most with their weak label) or relabels (train
the student on the prediction). TopoFilter only filters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import NearestNeighbors
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from w2s.scoring import accuracy, auroc


def _check(features: np.ndarray, soft_labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = np.asarray(features)
    # float32 features stay float32: large models' features for tens of thousands of points are big.
    features = features.astype(np.result_type(features.dtype, np.float32), copy=False)
    soft_labels = np.asarray(soft_labels, dtype=np.float64)
    if features.ndim != 2 or len(features) != len(soft_labels):
        raise ValueError(f"features {features.shape} do not match {len(soft_labels)} labels")
    if len(soft_labels) < 2 or soft_labels.min() < 0 or soft_labels.max() > 1:
        raise ValueError("need at least two soft labels, all in [0, 1]")
    return features, soft_labels


def _neighbours(index: np.ndarray, k: int, metric: str, queries: np.ndarray | None = None) -> np.ndarray:
    """k nearest indexed points of each query; without queries, of each indexed point, leaving out itself.

    Leaving a point out of its own neighbourhood is the whole point of a probe: with itself included, its
    own weak label votes on whether that label is right, and a flipped label props itself up (EleutherAI's
    kNN probe queried the training set against itself and so counted each point among its neighbours).
    scikit-learn leaves out the point by index, so an exact duplicate elsewhere still counts.
    """
    available = len(index) - (queries is None)
    if k < 1 or k > available:
        raise ValueError(
            f"probe parameter k={k}: the probe is fit on {len(index)} points, so k must be between 1 and "
            f"{available} (a point is not among its own neighbours); lower the probe's k (interventions.<name>.probe.k)"
        )
    nn = NearestNeighbors(n_neighbors=k, metric=metric).fit(index)
    return nn.kneighbors(queries, return_distance=False)


def knn_probe(features: np.ndarray, soft_labels: np.ndarray, k: int = 50, metric: str = "cosine") -> np.ndarray:
    """Each training point's mean of its k nearest neighbours' soft labels, itself excluded."""
    features, soft_labels = _check(features, soft_labels)
    return soft_labels[_neighbours(features, k, metric)].mean(axis=1)


def fit_soft_logreg(features: np.ndarray, soft_labels: np.ndarray, C: float = 1.0, max_iter: int = 1000) -> Pipeline:
    """Standardised L2 logistic regression minimising cross-entropy against soft labels.

    scikit-learn takes hard classes only, so every example appears twice, as class 1 with weight p and as
    class 0 with weight 1-p: the weighted log-loss of the pair is exactly the soft cross-entropy.
    """
    n = len(soft_labels)
    model = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    model.fit(
        np.concatenate([features, features]),
        np.concatenate([np.ones(n, dtype=int), np.zeros(n, dtype=int)]),
        logisticregression__sample_weight=np.concatenate([soft_labels, 1.0 - soft_labels]),
    )
    return model


def logreg_probe(
    features: np.ndarray,
    soft_labels: np.ndarray,
    C: float = 1.0,
    n_folds: int = 5,
    max_iter: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Out-of-fold p(class 1) of a soft-label logistic regression for every training point.

    Cross-fitting: each fold is predicted by a model fit on the other folds, so no prediction comes from a
    model that could memorise the label it is judged against (with more features than examples, an
    in-sample fit would reproduce every weak label and flag nothing).
    """
    features, soft_labels = _check(features, soft_labels)
    counts = np.bincount(soft_labels > 0.5, minlength=2)
    # StratifiedKFold needs a class with a point in every fold, and its own error names n_splits.
    if n_folds > counts.max():
        raise ValueError(
            f"probe parameter n_folds={n_folds}: the hardened weak labels have {counts[0]} points of class 0 "
            f"and {counts[1]} of class 1, and stratified folds need a class with at least n_folds points; lower "
            "the probe's n_folds (interventions.<name>.probe.n_folds)"
        )
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    out = np.empty(len(soft_labels))
    for train, held_out in folds.split(features, soft_labels > 0.5):
        model = fit_soft_logreg(features[train], soft_labels[train], C=C, max_iter=max_iter)
        out[held_out] = model.predict_proba(features[held_out])[:, 1]
    return out


def _largest_component_per_class(features: np.ndarray, hard: np.ndarray, k: int, metric: str) -> np.ndarray:
    """Membership in the largest connected component of each class's subgraph of the kNN graph.

    Edges between classes are cut, so a mislabelled point sitting among the other class is left isolated (or
    in a small island of similar mistakes) and falls outside its class's main component.
    """
    n = len(hard)
    rows = np.repeat(np.arange(n), k)
    cols = _neighbours(features, k, metric).ravel()
    same = hard[rows] == hard[cols]
    graph = coo_matrix((np.ones(same.sum()), (rows[same], cols[same])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    keep = np.zeros(n, dtype=bool)
    for cls in np.unique(hard):
        members = component[hard == cls]
        keep |= (hard == cls) & (component == np.bincount(members).argmax())
    return keep


def topo_probe(
    features: np.ndarray, soft_labels: np.ndarray, k: int = 50, metric: str = "cosine"
) -> tuple[np.ndarray, np.ndarray]:
    """TopoFilter (Wu et al. 2020) as (neighbour labels, disagreement score) per training point.

    Neighbour labels are the mean soft label of the k nearest points inside the per-class largest
    components (the points trusted so far). Points outside those components score 1 + disagreement and all
    others their disagreement (in [0, 1]), so the outsiders are dropped first, worst first.
    """
    features, soft_labels = _check(features, soft_labels)
    inside = _largest_component_per_class(features, soft_labels > 0.5, k, metric)
    trusted = soft_labels[inside]
    # The trusted set can be smaller than k + 1 on tiny data; its points then use all of it.
    neighbour_labels = np.empty(len(soft_labels))
    neighbour_labels[inside] = trusted[_neighbours(features[inside], min(k, inside.sum() - 1), metric)].mean(axis=1)
    if (~inside).any():
        outside = _neighbours(features[inside], min(k, inside.sum()), metric, queries=features[~inside])
        neighbour_labels[~inside] = trusted[outside].mean(axis=1)
    scores = np.abs(soft_labels - neighbour_labels) + (~inside).astype(np.float64)
    return neighbour_labels, scores


def keep_lowest(scores: np.ndarray, contamination: float) -> np.ndarray:
    """Keep mask dropping exactly floor(contamination * n) points with the highest scores (ties: the
    earlier index is dropped first, so the result is deterministic)."""
    if not 0 <= contamination < 1:
        raise ValueError(f"contamination must be in [0, 1), got {contamination}")
    scores = np.asarray(scores)
    keep = np.ones(len(scores), dtype=bool)
    keep[np.argsort(-scores, kind="stable")[: int(contamination * len(scores))]] = False
    return keep


def filter_mask(probe_pred: np.ndarray, soft_labels: np.ndarray, contamination: float) -> np.ndarray:
    """Keep mask dropping the `contamination` fraction with the largest |probe - weak label|."""
    return keep_lowest(np.abs(np.asarray(probe_pred) - np.asarray(soft_labels)), contamination)


def topofilter(
    features: np.ndarray, soft_labels: np.ndarray, k: int = 50, contamination: float = 0.1, metric: str = "cosine"
) -> np.ndarray:
    """Keep mask of TopoFilter with exactly the contamination budget. EleutherAI/w2s dropped every point
    outside the largest components even beyond the budget; here the budget holds."""
    return keep_lowest(topo_probe(features, soft_labels, k, metric)[1], contamination)


def probe_scores(probe_pred: np.ndarray, weak_labels: np.ndarray, ground_truth: np.ndarray) -> dict[str, float]:
    """Accuracy and AUROC of the probe against the hardened weak labels and against ground truth."""
    weak_hard = (np.asarray(weak_labels) > 0.5).astype(int)
    return {
        "probe_acc_vs_weak": accuracy(weak_hard, probe_pred),
        "probe_auroc_vs_weak": auroc(weak_hard, probe_pred),
        "probe_acc_vs_gt": accuracy(ground_truth, probe_pred),
        "probe_auroc_vs_gt": auroc(ground_truth, probe_pred),
    }


def _disagreement(probe: Callable[..., np.ndarray]) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    def run(features, soft_labels, **params):
        pred = probe(features, soft_labels, **params)
        return pred, np.abs(pred - np.asarray(soft_labels, dtype=np.float64))

    return run


@dataclass(frozen=True)
class Probe:
    run: Callable[..., tuple[np.ndarray, np.ndarray]]  # (features, soft_labels, **params) -> (pred, disagreement)
    can_relabel: bool


PROBES = {
    "knn": Probe(_disagreement(knn_probe), can_relabel=True),
    "logreg": Probe(_disagreement(logreg_probe), can_relabel=True),
    # TopoFilter's neighbour labels skip every point outside the trusted components, so they are a ranking
    # for filtering, not labels to train on.
    "topo": Probe(topo_probe, can_relabel=False),
}
USES = ("filter", "relabel")


def apply_probe(
    name: str, use: str, features: np.ndarray, soft_labels: np.ndarray, contamination: float | None = None, **params
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(keep_mask, new_labels, probe_pred) for the training points.

    filter: drop the `contamination` fraction (default 0.1) that disagrees most; labels stay the weak ones.
    relabel: keep every point; its label becomes the probe's prediction.
    """
    if name not in PROBES:
        raise ValueError(f"unknown probe {name!r}; known: {sorted(PROBES)}")
    if use not in USES:
        raise ValueError(f"unknown probe use {use!r}; use one of {USES}")
    probe = PROBES[name]
    if use == "relabel" and not probe.can_relabel:
        raise ValueError(
            f"probe {name!r} can only filter; relabel with one of "
            f"{sorted(n for n, p in PROBES.items() if p.can_relabel)}"
        )
    if use == "relabel" and contamination is not None:
        raise ValueError("contamination applies to use='filter' only; relabelling keeps every point")
    soft_labels = np.asarray(soft_labels, dtype=np.float64)
    pred, disagreement = probe.run(features, soft_labels, **params)
    if use == "relabel":
        return np.ones(len(pred), dtype=bool), pred, pred
    keep = keep_lowest(disagreement, 0.1 if contamination is None else contamination)
    return keep, soft_labels.copy(), pred
