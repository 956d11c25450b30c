import math

import numpy as np
import pandas as pd
import pytest

from w2s.analysis.pgr import pgr_interval
from w2s.analysis.statistics import KEYS, aggregate, auroc_rows, median_pgr
from w2s.scoring import accuracy, auroc

N_BOOT = 300
MIN_GAP = 0.01


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
    row = aggregate(cells, min_gap=MIN_GAP, n_boot=N_BOOT).iloc[0]
    assert row["n_seeds"] == 3
    for who in ("weak", "ceiling", "student"):
        for m, f in (("acc", accuracy), ("auroc", auroc)):
            want = np.mean([f(y, p) for y, p in zip(cells["labels"], cells[f"p_{who}"])])
            assert row[f"{who}_{m}"] == pytest.approx(want)
    want_pgr = (row["student_acc"] - row["weak_acc"]) / (row["ceiling_acc"] - row["weak_acc"])
    assert row["pgr_acc"] == pytest.approx(want_pgr)


def test_identical_student_and_ceiling_give_pgr_exactly_one():
    row = aggregate(_cells(student=lambda p: p[1].copy()), min_gap=MIN_GAP, n_boot=N_BOOT).iloc[0]
    for m in ("acc", "auroc"):
        assert (row[f"pgr_{m}"], row[f"pgr_{m}_lo"], row[f"pgr_{m}_hi"]) == (1.0, 1.0, 1.0)


def test_one_seed_still_has_example_level_width():
    row = aggregate(_cells(n_seeds=1), min_gap=MIN_GAP, n_boot=N_BOOT).iloc[0]
    assert row["n_seeds"] == 1
    for col in ("weak_acc", "student_auroc", "pgr_acc", "pgr_auroc"):
        assert row[f"{col}_hi"] - row[f"{col}_lo"] > 0


def test_intervals_contain_point_estimates():
    agg = aggregate(_cells(n_seeds=4), min_gap=MIN_GAP, n_boot=N_BOOT)
    for col in [c for c in agg.columns if c.endswith("_lo")]:
        base = col[:-3]
        assert (agg[col] <= agg[base]).all() and (agg[base] <= agg[f"{base}_hi"]).all(), base


def test_deterministic_given_seed_and_different_for_another():
    cells = _cells()
    a = aggregate(cells, min_gap=MIN_GAP, n_boot=N_BOOT, seed=1)
    pd.testing.assert_frame_equal(a, aggregate(cells, min_gap=MIN_GAP, n_boot=N_BOOT, seed=1))
    b = aggregate(cells, min_gap=MIN_GAP, n_boot=N_BOOT, seed=2)
    bounds = [c for c in a.columns if c.endswith(("_lo", "_hi"))]
    assert not np.allclose(a[bounds].to_numpy(float), b[bounds].to_numpy(float))
    pd.testing.assert_series_equal(a["pgr_acc"], b["pgr_acc"])  # point estimates do not depend on the seed


def test_wider_level_gives_wider_interval():
    cells = _cells()
    narrow = aggregate(cells, min_gap=MIN_GAP, n_boot=N_BOOT, level=0.5).iloc[0]
    wide = aggregate(cells, min_gap=MIN_GAP, n_boot=N_BOOT, level=0.95).iloc[0]
    for col in ("weak_acc", "ceiling_auroc", "pgr_acc"):
        assert wide[f"{col}_lo"] < narrow[f"{col}_lo"] and narrow[f"{col}_hi"] < wide[f"{col}_hi"]


def test_groups_by_keys():
    rng = np.random.default_rng(5)
    cells = pd.DataFrame([_seed_row(rng, s, task=t) for t in ("b", "a") for s in range(2)])
    agg = aggregate(cells, min_gap=MIN_GAP, n_boot=50)
    assert list(agg["task"]) == ["a", "b"] and list(agg["n_seeds"]) == [2, 2]
    assert list(agg.columns[:5]) == KEYS + ["n_seeds"]


def test_ceiling_equal_to_weak_gives_nan_pgr():
    cells = _cells()
    cells["p_ceiling"] = cells["p_weak"]
    row = aggregate(cells, min_gap=MIN_GAP, n_boot=N_BOOT).iloc[0]
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
    assert list(out.columns) == ["weak", "strong", "intervention", "n_tasks", "n_tasks_undefined", "median_pgr_acc"]
    got = out.set_index("intervention")
    assert got.loc["none", "median_pgr_acc"] == pytest.approx(0.5) and got.loc["none", "n_tasks"] == 3
    # The task without a gap to recover is left out of both the median and the count, and counted apart.
    assert got.loc["aux", "median_pgr_acc"] == pytest.approx(0.25) and got.loc["aux", "n_tasks"] == 2
    assert list(got["n_tasks_undefined"]) == [1, 0]


def exact_preds(labels, acc):
    """Predictions right on the first acc * n examples (0.8 / 0.2), so that accuracy and AUROC equal acc."""
    right = np.arange(len(labels)) < round(acc * len(labels))
    return np.where(right == (labels == 1), 0.8, 0.2)


def scored_cell(task, weak, ceiling, student, n=100):
    y = np.arange(n) % 2
    return {
        "task": task,
        "weak": "w",
        "strong": "s",
        "intervention": "xent",
        "seed": 0,
        "labels": y,
        **{
            f"p_{who}": exact_preds(y, acc) for who, acc in (("weak", weak), ("ceiling", ceiling), ("student", student))
        },
    }


def test_ceiling_below_weak_gives_no_pgr_and_stays_out_of_the_median():
    # Without the margin this cell's PGR is (0.70 - 0.75) / (0.72 - 0.75) = 1.67, and it was tb's median.
    cells = pd.DataFrame([scored_cell("ta", 0.75, 0.72, 0.70), scored_cell("tb", 0.60, 0.80, 0.65)])
    agg = aggregate(cells, min_gap=MIN_GAP, n_boot=N_BOOT).set_index("task")
    for m in ("acc", "auroc"):
        assert agg.loc["ta", ["weak_" + m, "ceiling_" + m, "student_" + m]].tolist() == pytest.approx([0.75, 0.72, 0.7])
        assert agg.loc["ta", [f"pgr_{m}", f"pgr_{m}_lo", f"pgr_{m}_hi"]].isna().all()
        assert agg.loc["ta", f"pgr_{m}_undefined"] == "ceiling - weak = -0.0300, not above the margin 0.01"
        assert agg.loc["tb", f"pgr_{m}"] == pytest.approx(0.25) and agg.loc["tb", f"pgr_{m}_undefined"] == ""
    median = median_pgr(agg.reset_index()).iloc[0]
    assert median["median_pgr_acc"] == pytest.approx(0.25)
    assert (median["n_tasks"], median["n_tasks_undefined"]) == (1, 1)


@pytest.mark.parametrize("min_gap, defined", [(0.0, True), (0.019, True), (0.02, False), (0.05, False)])
def test_pgr_needs_a_gap_above_the_margin(min_gap, defined):
    cells = pd.DataFrame([scored_cell("t", 0.70, 0.72, 0.71)])
    row = aggregate(cells, min_gap=min_gap, n_boot=N_BOOT).iloc[0]
    assert row["pgr_acc"] == pytest.approx(0.5) if defined else math.isnan(row["pgr_acc"])
    assert (row["pgr_acc_undefined"] == "") == defined


def test_a_small_gap_gives_a_pgr_without_an_interval():
    # A 2-point gap on 100 examples: above the margin, but most draws' gaps are not, so the interval is
    # unbounded rather than drawn from the few draws that happen to have a gap.
    row = aggregate(pd.DataFrame([scored_cell("t", 0.70, 0.72, 0.71)]), min_gap=MIN_GAP, n_boot=N_BOOT).iloc[0]
    assert row["pgr_acc"] == pytest.approx(0.5)
    assert math.isnan(row["pgr_acc_lo"]) and math.isnan(row["pgr_acc_hi"])
    assert row["pgr_acc_draws_undefined"] > 0.025


def test_bootstrap_draws_without_a_gap_count_as_beyond_both_bounds():
    values = np.arange(99.0)
    student, weak, ceiling = np.append(values, 0.0), np.zeros(100), np.append(np.ones(99), 0.0)
    lo, hi, undefined = pgr_interval(student, weak, ceiling, min_gap=0.0, level=0.9)
    # Sorted with the gapless draw at -inf, the 5th percentile sits at position 4.95: between 3 and 4;
    # with it at +inf, the 95th at 94.05. Dropping the draw instead would give 4.9 and 93.1.
    assert (lo, hi, undefined) == pytest.approx((3.95, 94.05, 0.01))
    assert pgr_interval(values, np.zeros(99), np.ones(99), 0.0, 0.9)[:2] == pytest.approx(
        tuple(np.percentile(values, [5, 95]))
    )
    # Once more than 5% of the draws have no PGR, neither bound exists.
    ceiling = np.append(np.ones(94), np.zeros(6))
    lo, hi, undefined = pgr_interval(np.arange(100.0), np.zeros(100), ceiling, min_gap=0.0, level=0.9)
    assert math.isnan(lo) and math.isnan(hi) and undefined == pytest.approx(0.06)


def region_cell(seed, regions):
    """A seed whose test examples fall in the given (weak right, ceiling right, student right, student
    agrees with weak) pattern, once per entry; labels alternate."""
    y = np.arange(len(regions)) % 2
    pred = {who: [] for who in ("weak", "ceiling", "student")}
    for label, (weak_right, ceiling_right, student_right) in zip(y, regions):
        for who, right in (("weak", weak_right), ("ceiling", ceiling_right), ("student", student_right)):
            pred[who].append(0.9 if right == (label == 1) else 0.1)
    return {
        "task": "t",
        "weak": "w",
        "strong": "s",
        "intervention": "xent",
        "seed": seed,
        "labels": y,
        **{f"p_{who}": np.array(p) for who, p in pred.items()},
    }


def test_imitation_rates_pool_counts_over_seeds_and_leave_empty_regions_empty():
    # (weak right, ceiling right, student right). No example has the weak model right and the ceiling wrong.
    seed0 = [(1, 1, 1)] * 6 + [(1, 1, 0)] * 2 + [(0, 1, 1)] * 1 + [(0, 1, 0)] * 3 + [(0, 0, 0)] * 2
    seed1 = [(1, 1, 1)] * 10 + [(0, 1, 1)] * 3 + [(0, 0, 1)] * 1
    row = aggregate(pd.DataFrame([region_cell(0, seed0), region_cell(1, seed1)]), min_gap=MIN_GAP, n_boot=N_BOOT)
    row = row.iloc[0]
    assert row["n_weak_right_ceiling_right"] == 18 and row["n_weak_wrong_ceiling_right"] == 7
    assert row["n_weak_wrong_ceiling_wrong"] == 3 and row["n_weak_wrong"] == 10
    assert row["student_acc_weak_right_ceiling_right"] == pytest.approx(16 / 18)
    # Pooled: 4 of the 7 examples, not the mean of the seeds' 1/4 and 3/3.
    assert row["student_acc_weak_wrong_ceiling_right"] == pytest.approx(4 / 7)
    assert row["deception_score"] == pytest.approx(3 / 7) and row["both_known_error"] == pytest.approx(2 / 18)
    # On a binary task a wrong student agrees with a wrong weak model: 3 + 2 of seed 0, none of seed 1.
    assert row["agreement_weak_wrong"] == pytest.approx(5 / 10)
    assert row["agreement"] == pytest.approx((6 + 5 + 10) / 28)
    assert row["ceiling_agreement_weak_wrong"] == pytest.approx(3 / 10)
    assert row["n_weak_right_ceiling_wrong"] == 0
    empty = [f"student_acc_weak_right_ceiling_wrong{end}" for end in ("", "_lo", "_hi")]
    assert row[empty].isna().all()
    for rate in ("agreement", "deception_score", "student_acc_weak_wrong_ceiling_right"):
        assert row[f"{rate}_lo"] <= row[rate] <= row[f"{rate}_hi"] and row[f"{rate}_lo"] < row[f"{rate}_hi"]


def test_paired_gaps_separate_models_whose_own_intervals_overlap():
    """Seeds shift all three models alike: each model's interval spans the seeds, while the paired difference
    of student and weak model on the same draws stays narrow and above zero."""
    rng = np.random.default_rng(5)
    rows = []
    for seed in range(3):
        shift = 1.2 * (seed - 1)  # a seed-wide shift of every model's logits
        row = _seed_row(rng, seed, n=400, noise=(1.0, 0.4, 0.8))
        # The student adds an independent noisy correction toward the label on top of the weak model's view.
        sign = 2 * row["labels"] - 1
        logit_weak = np.log(row["p_weak"] / (1 - row["p_weak"])) + shift
        logit_student = logit_weak + 0.8 * sign + 0.3 * rng.standard_normal(len(sign))
        row["p_weak"], row["p_student"] = 1 / (1 + np.exp(-logit_weak)), 1 / (1 + np.exp(-logit_student))
        rows.append(row)
    row = aggregate(pd.DataFrame(rows), min_gap=MIN_GAP, n_boot=N_BOOT).iloc[0]
    assert row["student_minus_weak_acc"] == pytest.approx(row["student_acc"] - row["weak_acc"])
    assert row["ceiling_minus_student_acc"] == pytest.approx(row["ceiling_acc"] - row["student_acc"])
    assert row["student_minus_weak_acc_lo"] > 0
    assert row["student_minus_weak_acc_hi"] - row["student_minus_weak_acc_lo"] < row["weak_acc_hi"] - row["weak_acc_lo"]
