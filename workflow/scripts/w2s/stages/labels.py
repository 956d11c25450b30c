"""Label stages on the CPU: the tables a student trains on (weak labels, their most confident part,
probe-cleaned labels, ensemble means) and the saliency probes on frozen features, which stand in for a student."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from w2s.atomic import write_json, write_parquet
from w2s.data.activations import features_for, load_activations
from w2s.labels.confident import confident_rows
from w2s.labels.linear_probe import probe_and_predict, probe_targets
from w2s.labels.probe_transform import probe_label_tables, probe_report
from w2s.labels.tables import mean_predictions, weak_label_table

PathLike = str | Path


def read_tables(paths: Mapping[str, PathLike]) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(path) for name, path in paths.items()}


def student_labels_stage(
    strong_train: PathLike,
    val: PathLike,
    weak_strong_train: PathLike,
    weak_val: PathLike,
    outputs: Mapping[str, PathLike],
) -> None:
    write_parquet(weak_label_table(pd.read_parquet(strong_train), pd.read_parquet(weak_strong_train)), outputs["train"])
    write_parquet(weak_label_table(pd.read_parquet(val), pd.read_parquet(weak_val)), outputs["val"])


def confident_labels_stage(
    strong_train: PathLike,
    val: PathLike,
    weak_strong_train: PathLike,
    weak_val: PathLike,
    keep: float,
    outputs: Mapping[str, PathLike],
) -> None:
    """The `keep` fraction of strong_train with the most confident weak labels; val keeps every weak label, so
    that the checkpoint is chosen on the supervisor's labels of the whole split, not only its easy part."""
    train = weak_label_table(pd.read_parquet(strong_train), pd.read_parquet(weak_strong_train))
    write_parquet(confident_rows(train, keep), outputs["train"])
    write_parquet(weak_label_table(pd.read_parquet(val), pd.read_parquet(weak_val)), outputs["val"])


def probe_labels_stage(
    strong_train: PathLike,
    val: PathLike,
    weak_strong_train: PathLike,
    weak_val: PathLike,
    activations: PathLike,
    probe: dict,
    outputs: Mapping[str, PathLike],
) -> None:
    """Weak labels filtered or relabelled by a probe; the probe's quality is reported beside them."""
    splits = [pd.read_parquet(strong_train), pd.read_parquet(val)]
    train, val_labels = (
        weak_label_table(split, pd.read_parquet(weak)) for split, weak in zip(splits, (weak_strong_train, weak_val))
    )
    act_ids, acts = load_activations(activations)
    kept_train, kept_val, pred = probe_label_tables(train, val_labels, act_ids, acts, probe)
    ground_truth = pd.concat([s["label"] for s in splits], ignore_index=True)
    report = probe_report(train, val_labels, pred, kept_train, kept_val, ground_truth)
    write_parquet(kept_train, outputs["train"])
    write_parquet(kept_val, outputs["val"])
    write_json({"probe": probe, **report}, outputs["report"])


def ensemble_labels_stage(
    strong_train: PathLike, val: PathLike, members: list[Mapping[str, PathLike]], outputs: Mapping[str, PathLike]
) -> None:
    """The mean soft label of several weak supervisors on strong_train and val (no ground truth column)."""
    for name, split in (("train", strong_train), ("val", val)):
        split_name = "strong_train" if name == "train" else "val"
        mean = mean_predictions([pd.read_parquet(m[split_name]) for m in members])
        write_parquet(weak_label_table(pd.read_parquet(split), mean), outputs[name])


def linear_probe_stage(
    split_paths: Mapping[str, PathLike],
    activations: PathLike,
    weak_preds: Mapping[str, PathLike],
    intervention: dict,
    outputs: Mapping[str, PathLike],
) -> None:
    """Saliency: a linear probe on the pretrained strong model's frozen activations, fit on strong_train's
    weak labels or ground truth, predicting test. No student is trained."""
    saliency = intervention["entry"]["saliency"]
    splits = read_tables(split_paths)
    act_ids, acts = load_activations(activations)
    features = {n: features_for(t["id"], act_ids, acts) for n, t in splits.items()}
    targets = probe_targets(splits, saliency["probe_labels"], read_tables(weak_preds))
    pred, info = probe_and_predict(features, targets, splits["test"], saliency)
    write_parquet(pred, outputs["test"])
    write_json(
        {"role": "linear_probe", "intervention": intervention, "features": "frozen pretrained", **info}, outputs["info"]
    )
