import inspect

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import expit

from w2s.labels.interventions import PROBE_DEFAULTS
from w2s.labels.probes import (
    PROBES,
    apply_probe,
    filter_mask,
    fit_soft_logreg,
    keep_lowest,
    knn_probe,
    logreg_probe,
    probe_scores,
    topo_probe,
    topofilter,
)

NOISE = 0.2


@pytest.fixture(scope="module")
def noisy():
    """Two well separated Gaussian clusters in 16-d; 20% of the weak labels flipped, confidently."""
    rng = np.random.default_rng(0)
    n, d = 600, 16
    truth = rng.integers(0, 2, n)
    centre = np.zeros(d)
    centre[0] = 4.0
    features = rng.normal(size=(n, d)) + np.where(truth[:, None] == 1, centre, -centre)
    flipped = rng.random(n) < NOISE
    weak_hard = np.where(flipped, 1 - truth, truth)
    confidence = rng.uniform(0.6, 1.0, n)
    soft = np.where(weak_hard == 1, confidence, 1 - confidence)
    return features.astype(np.float32), soft, truth, flipped


@pytest.mark.parametrize("name", ["knn", "logreg", "topo"])
def test_filters_drop_mostly_the_flipped_labels(noisy, name):
    features, soft, truth, flipped = noisy
    params = {} if name == "logreg" else {"k": 20}
    keep, labels, _ = apply_probe(name, "filter", features, soft, contamination=NOISE, **params)
    assert flipped.mean() > 0.15
    # Below half, not near zero: ranking by |probe - soft label| also flags confident clean labels (soft 1.0
    # against a neighbourhood mean of about 0.7) ahead of unconfident flipped ones.
    assert flipped[keep].mean() < flipped.mean() / 2
    np.testing.assert_array_equal(labels, soft)


@pytest.mark.parametrize("name", ["knn", "logreg"])
def test_relabelling_recovers_flipped_labels(noisy, name):
    features, soft, truth, flipped = noisy
    keep, labels, pred = apply_probe(name, "relabel", features, soft)
    assert keep.all() and np.array_equal(labels, pred)
    correct = (labels > 0.5) == (truth == 1)
    assert correct[flipped].mean() > 0.8
    assert correct[~flipped].mean() > 0.95


def test_soft_label_logreg_minimises_the_soft_cross_entropy():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(80, 3)) * [1.0, 5.0, 0.2] + [0.0, 3.0, -1.0]
    p = expit(x[:, 0] - 0.1 * x[:, 1] + rng.normal(size=80))
    C = 0.5
    model = fit_soft_logreg(x, p, C=C)
    z = (x - x.mean(0)) / x.std(0)

    def objective(theta):  # scikit-learn's L2 objective with soft targets: ||w||^2 / 2 + C * sum of soft CE
        logits = z @ theta[:-1] + theta[-1]
        ce = np.logaddexp(0, logits) - p * logits
        return 0.5 * theta[:-1] @ theta[:-1] + C * ce.sum()

    theta = minimize(objective, np.zeros(4), method="BFGS", options={"gtol": 1e-9}).x
    head = model[-1]
    np.testing.assert_allclose(head.coef_[0], theta[:-1], atol=1e-3)
    np.testing.assert_allclose(head.intercept_[0], theta[-1], atol=1e-3)
    np.testing.assert_allclose(model.predict_proba(x)[:, 1], expit(z @ theta[:-1] + theta[-1]), atol=1e-4)


def test_logreg_probe_is_out_of_fold():
    """With more features than examples, an in-sample fit memorises random labels; out-of-fold it cannot."""
    rng = np.random.default_rng(2)
    features = rng.normal(size=(60, 300))
    soft = rng.integers(0, 2, 60).astype(float)
    in_sample = fit_soft_logreg(features, soft, C=100.0).predict_proba(features)[:, 1]
    assert ((in_sample > 0.5) == (soft > 0.5)).mean() == 1.0
    out_of_fold = logreg_probe(features, soft, C=100.0)
    assert ((out_of_fold > 0.5) == (soft > 0.5)).mean() < 0.75


def test_knn_excludes_each_point_itself_even_with_exact_duplicates():
    features = np.array([[1.0, 0.0], [1.0, 0.01], [0.0, 1.0], [0.0, 1.0]])
    soft = np.array([1.0, 0.0, 0.9, 0.2])
    np.testing.assert_allclose(knn_probe(features, soft, k=1), [0.0, 1.0, 0.2, 0.9])
    # k = 3 is everyone else; with itself included, a point's own label would count
    np.testing.assert_allclose(
        knn_probe(features, soft, k=3), [(0 + 0.9 + 0.2) / 3, (1 + 0.9 + 0.2) / 3, (1 + 0 + 0.2) / 3, (1 + 0 + 0.9) / 3]
    )
    with pytest.raises(ValueError, match="neighbours"):
        knn_probe(features, soft, k=4)


@pytest.mark.parametrize("name", sorted(PROBES))
@pytest.mark.parametrize(("contamination", "dropped"), [(0.0, 0), (0.055, 5), (0.1, 10), (0.37, 37)])
def test_contamination_budget_is_exact(noisy, name, contamination, dropped):
    features, soft, _, _ = noisy
    n = 101  # floor(contamination * n) points are dropped, never more
    params = {} if name == "logreg" else {"k": 10}
    keep, _, _ = apply_probe(name, "filter", features[:n], soft[:n], contamination=contamination, **params)
    assert (~keep).sum() == dropped


def test_topofilter_drops_points_outside_the_largest_components_first_within_budget():
    """Labels at random: the class subgraphs fall apart, more points lie outside the largest components
    than the budget allows, and the budget still holds, spent on those outsiders only."""
    rng = np.random.default_rng(3)
    features = rng.normal(size=(200, 8))
    soft = rng.integers(0, 2, 200).astype(float)
    _, scores = topo_probe(features, soft, k=3)
    outside = scores >= 1
    assert outside.sum() > 20
    keep = topofilter(features, soft, k=3, contamination=0.1)
    assert (~keep).sum() == 20
    assert outside[~keep].all()


def test_filter_mask_and_ties():
    pred = np.array([0.5, 0.9, 0.1, 0.5])
    soft = np.array([0.5, 0.1, 0.1, 0.0])
    np.testing.assert_array_equal(filter_mask(pred, soft, 0.5), [True, False, True, False])
    np.testing.assert_array_equal(keep_lowest(np.array([1.0, 1.0, 0.0]), 0.34), [False, True, True])
    with pytest.raises(ValueError, match="contamination"):
        keep_lowest(np.zeros(3), 1.0)


def test_probe_scores_hand_checked():
    pred = np.array([0.9, 0.2, 0.6, 0.4])
    weak = np.array([0.8, 0.3, 0.3, 0.7])  # hardened: 1 0 0 1; the probe says 1 0 1 0
    gt = np.array([1, 0, 1, 0])
    scores = probe_scores(pred, weak, gt)
    # vs weak: positives score 0.9, 0.4 and negatives 0.2, 0.6: 3 of 4 pairs ranked right
    assert scores == {
        "probe_acc_vs_weak": 0.5,
        "probe_auroc_vs_weak": 0.75,
        "probe_acc_vs_gt": 1.0,
        "probe_auroc_vs_gt": 1.0,
    }


def test_apply_probe_refuses_what_it_cannot_do(noisy):
    features, soft, _, _ = noisy
    with pytest.raises(ValueError, match="only filter"):
        apply_probe("topo", "relabel", features, soft)
    with pytest.raises(ValueError, match="unknown probe"):
        apply_probe("svm", "filter", features, soft)
    with pytest.raises(ValueError, match="unknown probe use"):
        apply_probe("knn", "reweight", features, soft)
    with pytest.raises(ValueError, match="contamination"):
        apply_probe("knn", "relabel", features, soft, contamination=0.1)


@pytest.mark.parametrize("probe", [knn_probe, topo_probe])
def test_too_many_neighbours_names_the_probes_k(noisy, probe):
    features, soft, _, _ = noisy
    with pytest.raises(
        ValueError, match=r"probe parameter k=10: the probe is fit on 10 points, so k must be between 1 and 9"
    ):
        probe(features[:10], soft[:10], k=10)


def test_too_many_folds_names_the_probes_n_folds(noisy):
    features, soft, _, _ = noisy
    with pytest.raises(
        ValueError, match=r"probe parameter n_folds=5: the hardened weak labels have 2 points of class 0 and 2"
    ):
        logreg_probe(features[:4], np.array([0.1, 0.9, 0.2, 0.8]), n_folds=5)


@pytest.mark.parametrize("name, function", [("knn", knn_probe), ("topo", topo_probe), ("logreg", logreg_probe)])
def test_config_check_knows_the_probes_defaults(name, function):
    """The config check restates the defaults that the split sizes bound, to stay free of scikit-learn."""
    defaults = inspect.signature(function).parameters
    assert {k: defaults[k].default for k in PROBE_DEFAULTS[name]} == PROBE_DEFAULTS[name]
