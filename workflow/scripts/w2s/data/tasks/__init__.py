"""The task registry: one entry per task holds where its data comes from and how a record becomes
(text, label), so adding a task means adding one entry to HUB_TASKS or OFFLINE_TASKS."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .hub import load_hub_frame
from .hub_tasks import HUB_TASKS
from .offline import OFFLINE_TASKS
from .registry import HubSource, Task, TaskDataError, UnknownTaskError, WheelSource, WheelSpec, validate_task_frame

TASKS: dict[str, Task] = {task.name: task for task in HUB_TASKS + OFFLINE_TASKS}

__all__ = [
    "TASKS",
    "HubSource",
    "Task",
    "TaskDataError",
    "UnknownTaskError",
    "WheelSource",
    "WheelSpec",
    "get_task",
    "load_task",
    "validate_task_frame",
]


def get_task(name: str) -> Task:
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None


def load_task(name: str, raw_path: Path | None = None, rating_range: tuple[int, int] | None = None) -> pd.DataFrame:
    """The task's whole labelled pool as (text, label).

    Offline tasks read `raw_path`, the Parquet file written by w2s.data.materialize.materialize_dataset.
    Hub tasks download from the hub, or read `raw_path` as a local copy of the hub dataset (see
    w2s.data.tasks.local_copy); `rating_range` keeps the puzzles rated within it (chess_puzzles).
    """
    task = get_task(name)
    if isinstance(task.source, HubSource):
        df = load_hub_frame(name, task.source, raw_path, None if rating_range is None else tuple(rating_range))
    elif raw_path is None:
        raise TaskDataError(f"task {name} is read from a materialised file; pass raw_path (see w2s.data.materialize)")
    else:
        df = pd.read_parquet(raw_path)
    return validate_task_frame(df, name)
