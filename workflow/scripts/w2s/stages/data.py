"""The data stage: a task's labelled pool into disjoint, deduplicated splits for one seed."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from w2s.atomic import write_parquet
from w2s.data.splits import make_splits
from w2s.data.tasks import load_task
from w2s.layout import SPLITS

PathLike = str | Path


def splits_stage(
    task: str,
    raw_path: PathLike | None,
    sizes: Mapping[str, int],
    seed: int,
    balance: bool,
    outputs: Mapping[str, PathLike],
) -> None:
    splits = make_splits(load_task(task, Path(raw_path) if raw_path else None), dict(sizes), seed, balance, task)
    for name in SPLITS:
        write_parquet(splits[name], outputs[name])
