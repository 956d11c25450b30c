"""Loading a hub task: its labelled splits, from the hub or a local copy, through its record formatter."""

from __future__ import annotations

import hashlib
import heapq
import json
import random
from pathlib import Path

import pandas as pd

from .local_copy import load_local_copy
from .registry import HubSource, TaskDataError


def record_hash(record: dict) -> int:
    """A number fixed by the record's content alone; Python's hash() is salted per process, so it cannot serve."""
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)
    return int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big")


def record_rng(record: dict) -> random.Random:
    """An rng seeded by the record's content, so a record formats the same way in every run and process."""
    return random.Random(record_hash(record))


def known_label(record: dict, key: str, n_classes: int, offset: int = 0) -> int:
    """The record's class index (0 .. n_classes-1) from `record[key]`, an int or a numeric string counted
    from `offset`; a hidden label (-1 or "", as in test splits whose answers are not public) is an error,
    since formatting it would invent a label."""
    value = record[key]
    try:
        index = int(value) - offset
    except (TypeError, ValueError):
        index = -1
    if not 0 <= index < n_classes:
        raise TaskDataError(
            f"record has label {value!r} in {key!r} (expected {n_classes} classes from {offset}); a split whose "
            "labels are hidden must not be pooled"
        )
    return index


def _in_range(record: dict, column: str, rating_range: tuple[int, int]) -> bool:
    low, high = rating_range
    return low <= record[column] <= high


def load_hub_frame(
    name: str,
    source: HubSource,
    raw_path: Path | None = None,
    rating_range: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """Pool the labelled splits of a hub dataset into (text, label).

    `raw_path` is a local copy of what the task reads (see w2s.data.tasks.local_copy); `rating_range`
    keeps the records whose `source.rating` column lies in it (both ends included).
    """
    if rating_range is not None and source.rating is None:
        raise TaskDataError(f"task {name} has no rating column; rating_range applies to chess puzzles only")
    if raw_path is None:
        # datasets takes seconds to import and only hub tasks need it.
        import datasets

        dataset = datasets.load_dataset(
            source.path, name=source.config, data_dir=source.data_dir, revision=source.revision
        )
        missing = [s for s in source.splits if s not in dataset]
        if missing:
            raise TaskDataError(f"task {name}: {source.path} has no split(s) {missing}; it has {sorted(dataset)}")
    else:
        dataset = load_local_copy(Path(raw_path), source.splits, name)
    kept = (
        (split, record)
        for split in source.splits
        for record in dataset[split]
        if (source.keep is None or source.keep(record))
        and (rating_range is None or _in_range(record, source.rating, rating_range))
    )
    if source.pool_size is not None:
        # A generator: only pool_size records are ever held, whatever the dataset's size.
        kept = heapq.nsmallest(source.pool_size, kept, key=lambda item: record_hash(item[1]))
    rows = []
    for split, record in kept:
        try:
            rows.append(source.format(record, record_rng(record)))
        except TaskDataError as error:
            raise TaskDataError(f"task {name}, split {split}: {error}") from None
    return pd.DataFrame(rows, columns=["text", "label"])
