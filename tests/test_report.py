import json

import numpy as np
import pandas as pd
import pytest

from w2s.analysis.report import build_report, main
from w2s.analysis.summary import finished_metric_files, summarise
from w2s.labels.interventions import intervention_cells


def write_predictions(path, labels, acc):
    """Soft predictions on the test split that are right on the first acc * n examples."""
    right = np.arange(len(labels)) < round(acc * len(labels))
    pred = np.where(right == (labels == 1), 0.8, 0.2)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": [f"x{i}" for i in range(len(labels))], "soft_pred": pred}).to_parquet(path)


def write_cell(root, task, intervention, seed, student_acc, config=None, weak_acc=0.6, ceiling_acc=0.8):
    path = root / task / f"seed{seed}" / "metrics" / "weak" / "strong" / f"{intervention}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = np.arange(100) % 2
    seed_dir = root / task / f"seed{seed}"
    (seed_dir / "splits").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"id": [f"x{i}" for i in range(100)], "text": "t", "label": labels}).to_parquet(
        seed_dir / "splits" / "test.parquet"
    )
    write_predictions(seed_dir / "weak" / "weak" / "test.parquet", labels, weak_acc)
    write_predictions(seed_dir / "ceiling" / "strong" / "test.parquet", labels, ceiling_acc)
    write_predictions(seed_dir / "student" / "weak" / "strong" / intervention / "test.parquet", labels, student_acc)
    metrics = {
        "n_test": 100,
        "weak_acc": weak_acc,
        "weak_auroc": weak_acc + 0.05,
        "ceiling_acc": ceiling_acc,
        "ceiling_auroc": ceiling_acc + 0.05,
        "student_acc": student_acc,
        "student_auroc": 0.7,
        # As the cell_metrics rule records it, without the margin.
        "pgr_acc": (student_acc - weak_acc) / (ceiling_acc - weak_acc),
        "pgr_auroc": (0.7 - weak_acc - 0.05) / (ceiling_acc - weak_acc),
    }
    cell = {"task": task, "weak": "weak", "strong": "strong", "intervention": intervention, "seed": seed}
    path.write_text(json.dumps({"cell": cell, "config": config or {}, "metrics": metrics}))


def test_report_summarises_only_finished_cells(tmp_path):
    write_cell(tmp_path, "imdb", "xent", 0, 0.7)
    write_cell(tmp_path, "imdb", "xent", 1, 0.75)
    write_cell(tmp_path, "tweets", "xent", 0, 0.65)
    (tmp_path / "tweets" / "seed1" / "metrics").mkdir(parents=True)  # a cell still running: no file yet
    assert build_report(tmp_path, tmp_path / "partial", "acc", 0.01) == 3
    summary = pd.read_csv(tmp_path / "partial" / "summary.csv")
    assert sorted(zip(summary["task"], summary["seed"])) == [("imdb", 0), ("imdb", 1), ("tweets", 0)]
    assert summary.loc[summary["task"] == "imdb", "pgr_acc"].tolist() == pytest.approx([0.5, 0.75])
    assert (tmp_path / "partial" / "w2s_results.png").stat().st_size > 0
    # Metric files that record no intervention entry are W2S students, not ground-truth references.
    assert summary["reference"].dtype == bool and not summary["reference"].any()
    # The finished cells' predictions give seed means with bootstrap intervals, for the plot's error bars.
    agg = pd.read_csv(tmp_path / "partial" / "aggregate.csv").set_index("task")
    assert agg.loc["imdb", "n_seeds"] == 2 and agg.loc["tweets", "n_seeds"] == 1
    assert agg.loc["imdb", "student_acc"] == pytest.approx(0.725)
    assert agg.loc["imdb", "student_acc_lo"] < 0.725 < agg.loc["imdb", "student_acc_hi"]


def test_report_without_finished_cells_says_so(tmp_path):
    with pytest.raises(SystemExit, match="no finished cells"):
        build_report(tmp_path, tmp_path / "partial", "acc", 0.01)


def test_summary_flags_the_cells_that_learn_ground_truth(tmp_path):
    cells = intervention_cells(
        {
            "xent": {"loss": "xent"},
            "knn_filter": {"probe": {"name": "knn", "use": "filter"}},
            "lp_weak": {"saliency": {"finetune": False, "probe_labels": "weak"}},
            "lp_ground_truth": {"saliency": {"finetune": False, "probe_labels": "ground_truth"}},
            "finetune_lp_ground_truth": {"saliency": {"finetune": True, "probe_labels": "ground_truth"}},
        }
    )
    for name, cell in cells.items():
        write_cell(tmp_path, "imdb", name, 0, 0.7, config={"intervention": cell.record()})
    summary = summarise(finished_metric_files(tmp_path), 0.01)
    flagged = dict(zip(summary["intervention"], summary["reference"]))
    assert flagged == {
        "xent": False,
        "knn_filter": False,
        "lp_weak": False,
        "lp_ground_truth": True,
        "finetune_lp_ground_truth": True,
    }


def test_report_leaves_pgr_undefined_where_the_ceiling_is_below_the_weak_model(tmp_path):
    # The metric file records PGR (0.70 - 0.75) / (0.72 - 0.75) = 1.67 for this cell.
    write_cell(tmp_path, "imdb", "xent", 0, 0.70, weak_acc=0.75, ceiling_acc=0.72)
    write_cell(tmp_path, "tweets", "xent", 0, 0.65)
    build_report(tmp_path, tmp_path / "partial", "acc", 0.01)
    reason = "ceiling - weak = -0.0300, not above the margin 0.01"
    summary = pd.read_csv(tmp_path / "partial" / "summary.csv").set_index("task")
    assert np.isnan(summary.loc["imdb", "pgr_acc"]) and summary.loc["imdb", "pgr_acc_undefined"] == reason
    assert summary.loc["tweets", "pgr_acc"] == pytest.approx(0.25)
    assert pd.isna(summary.loc["tweets", "pgr_acc_undefined"])
    agg = pd.read_csv(tmp_path / "partial" / "aggregate.csv").set_index("task")
    assert agg.loc["imdb", ["pgr_acc", "pgr_acc_lo", "pgr_acc_hi"]].isna().all()
    assert agg.loc["imdb", "pgr_acc_undefined"] == reason
    median = pd.read_csv(tmp_path / "partial" / "median_pgr.csv").iloc[0]
    assert median["median_pgr_acc"] == pytest.approx(0.25)
    assert (median["n_tasks"], median["n_tasks_undefined"]) == (1, 1)
    for name in ("w2s_results", "w2s_imitation"):
        assert (tmp_path / "partial" / f"{name}.png").stat().st_size > 10_000


def test_report_tables_hold_the_imitation_rates(tmp_path):
    write_cell(tmp_path, "imdb", "xent", 0, 0.7)
    write_cell(tmp_path, "imdb", "xent", 1, 0.7)
    build_report(tmp_path, tmp_path / "partial", "acc", 0.01)
    agg = pd.read_csv(tmp_path / "partial" / "aggregate.csv").iloc[0]
    # write_predictions makes each model right on its first examples: weak on 60, ceiling on 80, student on
    # 70 of 100 per seed, so the weak-wrong examples split into 20 the ceiling gets right and 20 it does not.
    assert (agg["n_weak_wrong"], agg["n_weak_wrong_ceiling_right"], agg["n_weak_right_ceiling_wrong"]) == (80, 40, 0)
    assert agg["deception_score"] == pytest.approx(0.5) and agg["both_known_error"] == 0
    assert np.isnan(agg["student_acc_weak_right_ceiling_wrong"])
    assert agg["agreement"] == pytest.approx(0.9)


@pytest.mark.parametrize("flag, defined", [([], False), (["--pgr-min-gap", "0"], True)])
def test_report_command_takes_the_schemas_margin_unless_told(tmp_path, flag, defined):
    # A one-point gap: not above the default margin (config/README.md), above a margin of 0.
    write_cell(tmp_path, "imdb", "xent", 0, 0.7, weak_acc=0.6, ceiling_acc=0.61)
    main(["--results", str(tmp_path), *flag])
    summary = pd.read_csv(tmp_path / "partial" / "summary.csv")
    assert np.isfinite(summary["pgr_acc"].iloc[0]) == defined
