import json
import math

import numpy as np
import pandas as pd
import pytest

from w2s.scoring import accuracy, auroc, cell_metrics, pgr
from w2s.stages.analysis import metrics_stage


def test_accuracy_and_auroc_from_probabilities():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.6, 0.4, 0.9])
    assert accuracy(y, p) == 0.5
    assert auroc(y, p) == 0.75


def test_pgr_definition_and_empty_gap():
    assert pgr(0.8, 0.7, 0.9) == pytest.approx(0.5)
    assert pgr(0.6, 0.7, 0.9) == pytest.approx(-0.5)
    assert math.isnan(pgr(0.8, 0.7, 0.7))


def test_cell_metrics_aligns_predictions_by_id():
    test = pd.DataFrame({"id": ["a", "b", "c", "d"], "label": [0, 1, 0, 1]})
    weak = pd.DataFrame({"id": ["d", "c", "b", "a"], "soft_pred": [0.9, 0.6, 0.4, 0.1]})  # acc 0.5
    ceiling = pd.DataFrame({"id": ["a", "b", "c", "d"], "soft_pred": [0.1, 0.9, 0.2, 0.8]})  # acc 1
    student = pd.DataFrame({"id": ["a", "b", "c", "d"], "soft_pred": [0.1, 0.9, 0.6, 0.8]})  # acc .75
    m = cell_metrics(test, weak, ceiling, student)
    assert (m["weak_acc"], m["ceiling_acc"], m["student_acc"]) == (0.5, 1.0, 0.75)
    assert m["pgr_acc"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="student"):
        cell_metrics(test, weak, ceiling, student.iloc[:3])


def test_cell_metrics_record_imitation_rates_on_predictions_aligned_by_id(tmp_path):
    # Regions (weak, ceiling): a, b right-right; c wrong-right; d wrong-wrong; none right-wrong.
    test = pd.DataFrame({"id": ["a", "b", "c", "d"], "label": [0, 1, 0, 1]})
    frames = {
        "test": test,
        "weak": pd.DataFrame({"id": ["d", "c", "b", "a"], "soft_pred": [0.3, 0.7, 0.9, 0.1]}),
        "ceiling": pd.DataFrame({"id": ["a", "b", "c", "d"], "soft_pred": [0.2, 0.8, 0.4, 0.45]}),
        # The student copies the weak model's mistake on c and gets d right.
        "student": pd.DataFrame({"id": ["b", "a", "d", "c"], "soft_pred": [0.6, 0.3, 0.55, 0.8]}),
    }
    paths = {}
    for name, frame in frames.items():
        paths[name] = tmp_path / f"{name}.parquet"
        frame.to_parquet(paths[name])
    out = tmp_path / "metrics.json"
    metrics_stage(**paths, cell={"task": "t"}, provenance={}, out=out)
    imitation = json.loads(out.read_text())["imitation"]
    assert imitation["agreement"] == 0.75 and imitation["agreement_weak_wrong"] == 0.5
    assert imitation["n_weak_wrong"] == 2 and imitation["ceiling_agreement_weak_wrong"] == 0.5
    assert imitation["n_weak_right_ceiling_right"] == 2 and imitation["student_acc_weak_right_ceiling_right"] == 1.0
    assert imitation["n_weak_wrong_ceiling_right"] == 1 and imitation["deception_score"] == 1.0
    assert imitation["both_known_error"] == 0.0 and imitation["student_acc_weak_wrong_ceiling_wrong"] == 1.0
    # An empty region has no rate (NaN, not 0) and size 0.
    assert imitation["n_weak_right_ceiling_wrong"] == 0
    assert math.isnan(imitation["student_acc_weak_right_ceiling_wrong"])
