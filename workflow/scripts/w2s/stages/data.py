"""The data stage: a task's labelled pool into disjoint, deduplicated splits for one seed."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    rating_range: Sequence[int] | None = None,
) -> None:
    """`raw_path`: an offline task's materialised file or a hub task's local copy (None: the hub)."""
    # Only a task that takes a rating range is given one, so other tasks load as they always have.
    options = {} if rating_range is None else {"rating_range": tuple(rating_range)}
    pool = load_task(task, Path(raw_path) if raw_path else None, **options)
    splits = make_splits(pool, dict(sizes), seed, balance, task)
    for name in SPLITS:
        write_parquet(splits[name], outputs[name])
