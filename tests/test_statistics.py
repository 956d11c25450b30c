import math

import numpy as np
import pandas as pd
import pytest

from w2s.analysis.statistics import KEYS, aggregate, auroc_rows, median_pgr
from w2s.scoring import accuracy, auroc

N_BOOT = 300


def _seed_row(rng, seed, n=200, noise=(1.5, 0.5, 0.9), task="t", student=None):
    """One seed's cell: weak, ceiling and student get logits of decreasing noise around the label."""
    y = rng.integers(0, 2, n)
    sign = 2 * y - 1
    p = [1 / (1 + np.exp(-(sign + s * rng.standard_normal(n)))) for s in noise]
    return {
        "task": task,
        "weak": "w",
        "strong": "s",
        "intervention": "none",
        "seed": seed,
        "labels": y,
        "p_weak": p[0],
        "p_ceiling": p[1],
        "p_student": p[2] if student is None else student(p),
    }


def _cells(n_seeds=3, **kw):
    rng = np.random.default_rng(123)
    return pd.DataFrame([_seed_row(rng, s, **kw) for s in range(n_seeds)])


def test_vectorised_auroc_matches_sklearn_with_ties():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (5, 40))
    p = rng.integers(0, 4, (5, 40)) / 4  # coarse scores, so ties matter
    np.testing.assert_allclose(auroc_rows(y, p), [auroc(a, b) for a, b in zip(y, p)])
    assert math.isnan(auroc_rows(np.ones((1, 4), int), p[:1, :4])[0])


def test_means_equal_hand_computed_means():
    cells = _cells()
    row = aggregate(cells, n_boot=N_BOOT).iloc[0]
    assert row["n_seeds"] == 3
    for who in ("weak", "ceiling", "student"):
        for m, f in (("acc", accuracy), ("auroc", auroc)):
            want = np.mean([f(y, p) for y, p in zip(cells["labels"], cells[f"p_{who}"])])
            assert row[f"{who}_{m}"] == pytest.approx(want)
    want_pgr = (row["student_acc"] - row["weak_acc"]) / (row["ceiling_acc"] - row["weak_acc"])
    assert row["pgr_acc"] == pytest.approx(want_pgr)


def test_identical_student_and_ceiling_give_pgr_exactly_one():
    row = aggregate(_cells(student=lambda p: p[1].copy()), n_boot=N_BOOT).iloc[0]
    for m in ("acc", "auroc"):
        assert (row[f"pgr_{m}"], row[f"pgr_{m}_lo"], row[f"pgr_{m}_hi"]) == (1.0, 1.0, 1.0)


def test_one_seed_still_has_example_level_width():
    row = aggregate(_cells(n_seeds=1), n_boot=N_BOOT).iloc[0]
    assert row["n_seeds"] == 1
    for col in ("weak_acc", "student_auroc", "pgr_acc", "pgr_auroc"):
        assert row[f"{col}_hi"] - row[f"{col}_lo"] > 0


def test_intervals_contain_point_estimates():
    agg = aggregate(_cells(n_seeds=4), n_boot=N_BOOT)
    for col in [c for c in agg.columns if c.endswith("_lo")]:
        base = col[:-3]
        assert (agg[col] <= agg[base]).all() and (agg[base] <= agg[f"{base}_hi"]).all(), base


def test_deterministic_given_seed_and_different_for_another():
    cells = _cells()
    a = aggregate(cells, n_boot=N_BOOT, seed=1)
    pd.testing.assert_frame_equal(a, aggregate(cells, n_boot=N_BOOT, seed=1))
    b = aggregate(cells, n_boot=N_BOOT, seed=2)
    bounds = [c for c in a.columns if c.endswith(("_lo", "_hi"))]
    assert not np.allclose(a[bounds].to_numpy(float), b[bounds].to_numpy(float))
    pd.testing.assert_series_equal(a["pgr_acc"], b["pgr_acc"])  # point estimates do not depend on the seed


def test_wider_level_gives_wider_interval():
    cells = _cells()
    narrow = aggregate(cells, n_boot=N_BOOT, level=0.5).iloc[0]
    wide = aggregate(cells, n_boot=N_BOOT, level=0.95).iloc[0]
    for col in ("weak_acc", "ceiling_auroc", "pgr_acc"):
        assert wide[f"{col}_lo"] < narrow[f"{col}_lo"] and narrow[f"{col}_hi"] < wide[f"{col}_hi"]


def test_groups_by_keys():
    rng = np.random.default_rng(5)
    cells = pd.DataFrame([_seed_row(rng, s, task=t) for t in ("b", "a") for s in range(2)])
    agg = aggregate(cells, n_boot=50)
    assert list(agg["task"]) == ["a", "b"] and list(agg["n_seeds"]) == [2, 2]
    assert list(agg.columns[:5]) == KEYS + ["n_seeds"]


def test_ceiling_equal_to_weak_gives_nan_pgr():
    cells = _cells()
    cells["p_ceiling"] = cells["p_weak"]
    row = aggregate(cells, n_boot=N_BOOT).iloc[0]
    for m in ("acc", "auroc"):
        assert all(math.isnan(row[f"pgr_{m}{s}"]) for s in ("", "_lo", "_hi"))
    assert row["weak_acc_lo"] < row["weak_acc_hi"]


def test_median_pgr_over_three_tasks():
    agg = pd.DataFrame(
        {
            "task": ["t1", "t2", "t3", "t1", "t2", "t3"],
            "weak": ["w"] * 6,
            "strong": ["s"] * 6,
            "intervention": ["none"] * 3 + ["aux"] * 3,
            "pgr_acc": [0.2, 0.9, 0.5, 0.1, float("nan"), 0.4],
        }
    )
    out = median_pgr(agg)
    assert list(out.columns) == ["weak", "strong", "intervention", "n_tasks", "median_pgr_acc"]
    got = out.set_index("intervention")
    assert got.loc["none", "median_pgr_acc"] == pytest.approx(0.5) and got.loc["none", "n_tasks"] == 3
    # The task without a gap to recover is left out of both the median and the count.
    assert got.loc["aux", "median_pgr_acc"] == pytest.approx(0.25) and got.loc["aux", "n_tasks"] == 2
