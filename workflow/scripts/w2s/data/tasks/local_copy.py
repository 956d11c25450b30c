"""A local copy of a hub task's data, for compute nodes without internet.

The copy is a folder holding the splits the task pools, in either of two forms:
- what `DatasetDict.save_to_disk` writes (recognised by its `dataset_dict.json`);
- Parquet files, each belonging to the split that its name or its folder names: `train.parquet`,
  `train-00000-of-00002.parquet` (a hub snapshot's `data/` folder) or `train/0000.parquet` (the hub's
  Parquet conversion). Files of other splits are ignored.
A copy holds what the task reads after the hub's config and data_dir are applied: the rows of that subset.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from .registry import TaskDataError

SAVE_TO_DISK_INDEX = "dataset_dict.json"


def option_key(task: str) -> str:
    return f"task_options.{task}.local_copy"


def copy_files(path: Path) -> list[Path]:
    """Every file of the copy: the splits job's inputs, so that a changed copy reruns it."""
    return sorted(p for p in Path(path).rglob("*") if p.is_file())


def _parquet_split(file: Path, splits: Iterable[str]) -> str | None:
    for split in splits:
        if file.stem == split or file.stem.startswith(f"{split}-") or file.parent.name == split:
            return split
    return None


def parquet_files(path: Path, splits: Iterable[str]) -> dict[str, list[Path]]:
    """The Parquet files of each split of `splits` that the copy holds."""
    found: dict[str, list[Path]] = {}
    for file in sorted(Path(path).rglob("*.parquet")):
        split = _parquet_split(file, splits)
        if split is not None:
            found.setdefault(split, []).append(file)
    return found


def copy_splits(path: Path, splits: Iterable[str]) -> set[str]:
    """The splits of `splits` that the copy holds (read from the index or the file names only)."""
    index = Path(path) / SAVE_TO_DISK_INDEX
    if index.is_file():
        return set(json.loads(index.read_text())["splits"]) & set(splits)
    return set(parquet_files(path, splits))


def local_copy_problem(path: Path, splits: tuple[str, ...], task: str) -> str | None:
    """What is wrong with the copy for this task, naming the config key and the fix; None when nothing."""
    path = Path(path)
    if not path.is_dir():
        return (
            f"config key '{option_key(task)}': {str(path)!r} is not an existing folder; give the folder that "
            "DatasetDict.save_to_disk wrote, or a folder of Parquet files named after their splits"
        )
    missing = [s for s in splits if s not in copy_splits(path, splits)]
    if missing:
        return (
            f"config key '{option_key(task)}': the local copy {str(path)!r} lacks split(s) {missing} that task "
            f"{task} pools ({list(splits)}); save every one of them (save_to_disk, or Parquet files named "
            "'<split>.parquet')"
        )
    return None


def load_local_copy(path: Path, splits: tuple[str, ...], task: str) -> Mapping:
    """The copy's splits (split -> datasets.Dataset); raises TaskDataError naming the key when it is unusable."""
    problem = local_copy_problem(path, splits, task)
    if problem:
        raise TaskDataError(problem)
    # datasets takes seconds to import and only hub tasks need it.
    import datasets

    if (Path(path) / SAVE_TO_DISK_INDEX).is_file():
        return datasets.load_from_disk(str(path))
    files = parquet_files(path, splits)
    return datasets.load_dataset("parquet", data_files={s: [str(f) for f in files[s]] for s in splits})
