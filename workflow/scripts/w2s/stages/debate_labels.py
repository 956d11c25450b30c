"""The labels of a debate cell, on the CPU: the mean soft prediction of its debate-informed weak supervisors
on strong_train and val, joined to the plain texts (the student never sees a debate), and a report of how good
those supervisors are on test."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from w2s.atomic import write_json
from w2s.labels.tables import mean_predictions
from w2s.scoring import accuracy, auroc
from w2s.stages.labels import ensemble_labels_stage

PathLike = str | Path


def supervisor_scores(test: pd.DataFrame, preds: pd.DataFrame) -> dict[str, float]:
    p1 = preds.set_index("id")["soft_pred"].reindex(test["id"])
    if p1.isna().any():
        raise ValueError("a debate-informed weak model's test predictions miss test examples; rerun its job")
    labels = test["label"].to_numpy()
    return {"acc": accuracy(labels, p1.to_numpy()), "auroc": auroc(labels, p1.to_numpy())}


def debate_labels_stage(
    strong_train: PathLike,
    val: PathLike,
    test: PathLike,
    members: list[Mapping[str, PathLike]],
    debater: str,
    outputs: Mapping[str, PathLike],
) -> None:
    """Label tables as an ensemble's; the report gives each supervisor's and their mean's test accuracy and
    AUROC (ground truth is read for the report only), to compare with the plain weak model's."""
    ensemble_labels_stage(strong_train, val, members, outputs)
    test_split = pd.read_parquet(test)
    member_preds = [pd.read_parquet(m["test"]) for m in members]
    write_json(
        {
            "debater": debater,
            "replicas": len(members),
            "members": [supervisor_scores(test_split, p) for p in member_preds],
            "mean": supervisor_scores(test_split, mean_predictions(member_preds)),
        },
        outputs["report"],
    )
