"""The conflict setting of weak-to-strong deception (Yang et al., 2024, "Super(ficial)-alignment"): a student
learns one objective from weak labels and a conflicting second objective from ground truth, and the deception
score asks whether it then errs on the first objective where its weak supervisor cannot tell.

The student's training table is its cell's label table of the primary task plus examples of the conflict
task's strong_train with their ground-truth labels, shuffled together; validation and test stay on the
primary task alone.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from w2s.labels.tables import ground_truth_labels

LABEL_COLUMNS = ["id", "text", "soft_label"]


def conflict_id(task: str, example_id: str) -> str:
    """An example id in the conflict task's namespace. A primary id (a hex digest of its text) has no colon,
    so the rows of two tasks cannot share an id in one table."""
    return f"{task}:{example_id}"


def conflict_rows(
    split: pd.DataFrame, task: str, size: int | None, primary_ids: Iterable[str]
) -> tuple[pd.DataFrame, int]:
    """The first `size` examples (every one, if None) of the conflict task's strong_train in the split's order,
    with their ground truth as hard soft labels and ids in the task's namespace, and how many were skipped.

    Ids are digests of the text in every task, so an example whose id the student also meets in the primary
    task (its training, validation or test texts) is the same text: it is skipped, so that no primary text
    is trained on under the other objective's ground truth.
    """
    shared = split["id"].isin(set(primary_ids))
    kept = split[~shared]
    if size is not None and size > len(kept):
        raise ValueError(
            f"conflict.size: {size} examples of {task}'s strong_train wanted, but only {len(kept)} of its "
            f"{len(split)} are not also texts of the primary task; lower conflict.size or set it to null (all)"
        )
    rows = ground_truth_labels(kept.iloc[:size])
    return rows.assign(id=[conflict_id(task, i) for i in rows["id"]]), int(shared.sum())


def with_conflict(
    train: pd.DataFrame, conflict_split: pd.DataFrame, conflict: dict, primary_ids: Iterable[str], seed: int
) -> tuple[pd.DataFrame, dict]:
    """The primary label table `train` (id, text, soft_label) plus the `conflict` entry's rows of
    `conflict_split` (the conflict task's strong_train), shuffled together with `seed`; and what the conflict
    part is, for the student's info.json."""
    rows, skipped = conflict_rows(conflict_split, conflict["task"], conflict.get("size"), primary_ids)
    table = pd.concat([train[LABEL_COLUMNS], rows], ignore_index=True)
    if table["id"].duplicated().any():
        raise ValueError("the primary label table and the conflict rows share ids; ids must be unique per table")
    shuffled = table.iloc[np.random.default_rng(seed).permutation(len(table))].reset_index(drop=True)
    record = {
        "task": conflict["task"],
        "size": conflict.get("size"),
        "labels": "ground_truth",
        "n": len(rows),
        "skipped_shared_texts": skipped,
    }
    return shuffled, record
