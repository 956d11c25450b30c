"""The activation file: pooled frozen features of a strong model, one float32 matrix per layer, with the
example ids they belong to. The activations rule writes it once per (task, strong model); probes read it."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
from safetensors import safe_open
from safetensors.numpy import save_file

from w2s.atomic import atomic_path

LAYER_KEY = "layer_{}"


def save_activations(acts: dict[int, np.ndarray], ids: list[str], path: str | os.PathLike) -> None:
    for layer, array in acts.items():
        if len(array) != len(ids):
            raise ValueError(f"layer {layer} has {len(array)} rows for {len(ids)} ids")
    tensors = {LAYER_KEY.format(layer): np.ascontiguousarray(array, dtype=np.float32) for layer, array in acts.items()}
    # safetensors holds numbers only; the ids ride in its string metadata header.
    metadata = {"ids": json.dumps([str(i) for i in ids])}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_activations(path: str | os.PathLike) -> tuple[list[str], dict[int, np.ndarray]]:
    prefix = LAYER_KEY.format("")
    with safe_open(str(path), framework="numpy") as f:
        ids = json.loads(f.metadata()["ids"])
        acts = {int(key[len(prefix) :]): f.get_tensor(key) for key in f.keys()}
    return ids, dict(sorted(acts.items()))


def features_for(ids: pd.Series, act_ids: list[str], acts: dict[int, np.ndarray]) -> np.ndarray:
    """Rows of the activation file for `ids`, the configured layers side by side."""
    row = {i: r for r, i in enumerate(act_ids)}
    missing = [i for i in ids if i not in row]
    if missing:
        raise ValueError(
            f"{len(missing)} examples have no activations (e.g. {missing[:3]}); rerun the activations rule"
        )
    rows = np.fromiter((row[i] for i in ids), dtype=np.int64, count=len(ids))
    return np.concatenate([acts[layer][rows] for layer in sorted(acts)], axis=1)
