import math

import numpy as np
import pandas as pd
import pytest

from w2s.scoring import accuracy, auroc, cell_metrics, pgr


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
