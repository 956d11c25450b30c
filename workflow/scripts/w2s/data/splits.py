"""Disjoint, deduplicated, optionally class-balanced splits of a task's examples."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pandas as pd

from w2s.layout import SPLITS


class SplitError(ValueError):
    pass


def normalise_text(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def example_id(text: str) -> str:
    """A stable id: the same text gets the same id in every run, seed and split."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:16]


def deduplicate(df: pd.DataFrame) -> pd.DataFrame:
    """One row per normalised text; texts seen with both labels are dropped as ambiguous."""
    df = df.assign(text=df["text"].map(normalise_text))
    df = df[df["text"] != ""]
    n_labels = df.groupby("text")["label"].transform("nunique")
    df = df[n_labels == 1].drop_duplicates("text")
    return df.assign(id=df["text"].map(example_id), label=df["label"].astype(int))[["id", "text", "label"]]


def make_splits(
    df: pd.DataFrame, sizes: dict[str, int], seed: int, balance: bool, task: str = "task"
) -> dict[str, pd.DataFrame]:
    """Split `df` (columns text, label) into disjoint weak_train / strong_train / val / test tables."""
    pool = deduplicate(df)
    rng = np.random.default_rng(seed)
    pool = pool.iloc[rng.permutation(len(pool))].reset_index(drop=True)
    wanted = sum(sizes[name] for name in SPLITS)
    if balance:
        by_class = {c: g for c, g in pool.groupby("label")}
        per_class_needed = {name: (sizes[name] + 1) // 2 for name in SPLITS}
        need = sum(per_class_needed.values())
        short = {c: len(g) for c, g in by_class.items() if len(g) < need}
        if short or len(by_class) < 2:
            raise SplitError(
                f"task {task!r}: balanced splits need {need} unique examples of each class "
                f"(sizes {dict(sizes)}), but the classes have {dict(pool['label'].value_counts().sort_index())}; "
                "lower config 'splits' sizes or set splits.balance: false"
            )
        out, start = {}, 0
        for name in SPLITS:
            k = per_class_needed[name]
            parts = [g.iloc[start : start + k] for g in by_class.values()]
            split = pd.concat(parts).sample(frac=1.0, random_state=int(rng.integers(2**31)))
            out[name] = split.iloc[: sizes[name]].reset_index(drop=True)
            start += k
        return out
    if wanted > len(pool):
        raise SplitError(
            f"task {task!r}: split sizes add up to {wanted} but only {len(pool)} unique examples exist; "
            "lower config 'splits' sizes"
        )
    out, start = {}, 0
    for name in SPLITS:
        out[name] = pool.iloc[start : start + sizes[name]].reset_index(drop=True)
        start += sizes[name]
    return out
