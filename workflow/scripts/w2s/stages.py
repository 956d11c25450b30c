"""One plain function per DAG stage: read input files, compute, write output files atomically.

Rule scripts are thin adapters from the `snakemake` object to these functions; tests call them directly.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import pandas as pd

from w2s.activations import extract_activations, load_activations, save_activations
from w2s.atomic import write_json, write_parquet, write_text
from w2s.jobs import ground_truth_labels, train_and_predict, train_config_from
from w2s.metrics import cell_metrics
from w2s.modeling import ModelSpec
from w2s.probe_labels import probe_label_tables, probe_report
from w2s.splits import SPLIT_NAMES, make_splits
from w2s.statistics import KEYS, aggregate, median_pgr
from w2s.tasks import load_task

PathLike = str | Path


def splits_stage(task: str, raw_path: PathLike | None, sizes: Mapping[str, int], seed: int, balance: bool,
                 outputs: Mapping[str, PathLike]) -> None:
    splits = make_splits(load_task(task, Path(raw_path) if raw_path else None), dict(sizes), seed, balance, task)
    for name in SPLIT_NAMES:
        write_parquet(splits[name], outputs[name])


def _model(alias: str, entry: dict, path: str, train_section: dict):
    return ModelSpec.from_config(alias, entry, path), train_config_from(entry, train_section)


def _save_dir(train_section: dict, outputs: Mapping[str, PathLike]) -> Path | None:
    """Weights are written only on request: every prediction is made inside the training job."""
    return Path(outputs["info"]).parent / "model" if train_section.get("keep_weights") else None


def weak_stage(split_paths: Mapping[str, PathLike], alias: str, entry: dict, model_path: str, train_section: dict,
               seed: int, outputs: Mapping[str, PathLike]) -> None:
    """Train on weak_train ground truth; write soft predictions on strong_train, val and test."""
    spec, cfg = _model(alias, entry, model_path, train_section)
    splits = {name: pd.read_parquet(split_paths[name]) for name in SPLIT_NAMES}
    predict_on = {name: splits[name] for name in ("strong_train", "val", "test")}
    preds, info = train_and_predict(spec, cfg, ground_truth_labels(splits["weak_train"]),
                                    ground_truth_labels(splits["val"]), predict_on, seed,
                                    save_dir=_save_dir(train_section, outputs))
    for name, table in preds.items():
        write_parquet(table, outputs[name])
    write_json({"role": "weak", **info}, outputs["info"])


def ceiling_stage(split_paths: Mapping[str, PathLike], alias: str, entry: dict, model_path: str,
                  train_section: dict, seed: int, outputs: Mapping[str, PathLike]) -> None:
    """Train the strong model on strong_train ground truth; write soft predictions on test."""
    spec, cfg = _model(alias, entry, model_path, train_section)
    train, val, test = (pd.read_parquet(split_paths[n]) for n in ("strong_train", "val", "test"))
    preds, info = train_and_predict(spec, cfg, ground_truth_labels(train), ground_truth_labels(val),
                                    {"test": test}, seed, save_dir=_save_dir(train_section, outputs))
    write_parquet(preds["test"], outputs["test"])
    write_json({"role": "ceiling", **info}, outputs["info"])


def weak_label_table(split: pd.DataFrame, weak_preds: pd.DataFrame) -> pd.DataFrame:
    """Attach the weak model's soft predictions to a split's texts; the ground-truth column is left out."""
    merged = split[["id", "text"]].merge(weak_preds[["id", "soft_pred"]], on="id", how="left", validate="1:1")
    if merged["soft_pred"].isna().any():
        raise ValueError("weak predictions are missing for some examples of the split")
    return merged.rename(columns={"soft_pred": "soft_label"})


def student_labels_stage(strong_train: PathLike, val: PathLike, weak_strong_train: PathLike, weak_val: PathLike,
                         outputs: Mapping[str, PathLike]) -> None:
    write_parquet(weak_label_table(pd.read_parquet(strong_train), pd.read_parquet(weak_strong_train)), outputs["train"])
    write_parquet(weak_label_table(pd.read_parquet(val), pd.read_parquet(weak_val)), outputs["val"])


def activations_stage(split_paths: list[PathLike], model_path: str, pooling: str, max_length: int,
                      layers: list[int] | None, batch_size: int, out: PathLike) -> None:
    """Frozen pretrained features of every example in `split_paths` (all seeds' strong_train and val), once."""
    examples = pd.concat([pd.read_parquet(p)[["id", "text"]] for p in split_paths]).drop_duplicates("id")
    acts = extract_activations(model_path, examples["text"].tolist(), layers, pooling, max_length, batch_size)
    save_activations(acts, examples["id"].tolist(), out)


def probe_labels_stage(strong_train: PathLike, val: PathLike, weak_strong_train: PathLike, weak_val: PathLike,
                       activations: PathLike, probe: dict, outputs: Mapping[str, PathLike]) -> None:
    """Weak labels filtered or relabelled by a probe; the probe's quality is reported beside them."""
    splits = [pd.read_parquet(strong_train), pd.read_parquet(val)]
    train, val_labels = (weak_label_table(split, pd.read_parquet(weak))
                         for split, weak in zip(splits, (weak_strong_train, weak_val)))
    act_ids, acts = load_activations(activations)
    kept_train, kept_val, pred = probe_label_tables(train, val_labels, act_ids, acts, probe)
    ground_truth = pd.concat([s["label"] for s in splits], ignore_index=True)
    report = probe_report(train, val_labels, pred, kept_train, kept_val, ground_truth)
    write_parquet(kept_train, outputs["train"])
    write_parquet(kept_val, outputs["val"])
    write_json({"probe": probe, **report}, outputs["report"])


def student_stage(label_paths: Mapping[str, PathLike], test_path: PathLike, alias: str, entry: dict,
                  model_path: str, train_section: dict, intervention: dict, seed: int,
                  outputs: Mapping[str, PathLike]) -> None:
    """Train the strong student on the label tables (weak labels, never ground truth); predict on test."""
    spec, cfg = _model(alias, entry, model_path, train_section)
    train, val = pd.read_parquet(label_paths["train"]), pd.read_parquet(label_paths["val"])
    test = pd.read_parquet(test_path)[["id", "text"]]
    # An intervention entry holds the loss name, the loss's parameters and, optionally, a probe (used upstream).
    params = {k: v for k, v in intervention.items() if k not in ("loss", "probe")}
    preds, info = train_and_predict(spec, cfg, train, val, {"test": test}, seed, intervention["loss"], params,
                                    save_dir=_save_dir(train_section, outputs))
    write_parquet(preds["test"], outputs["test"])
    write_json({"role": "student", "intervention": intervention, **info}, outputs["info"])


def metrics_stage(test: PathLike, weak: PathLike, ceiling: PathLike, student: PathLike, cell: dict,
                  provenance: dict, out: PathLike, probe_report: PathLike | None = None) -> None:
    """Write the cell's metrics with the config entries that produced them (and the probe's report)."""
    metrics = cell_metrics(*(pd.read_parquet(p) for p in (test, weak, ceiling, student)))
    record = {"cell": cell, "config": provenance, "metrics": metrics}
    if probe_report is not None:
        record["probe"] = json.loads(Path(probe_report).read_text())
    write_json(record, out)


def aggregate_stage(cells: list[dict], outputs: Mapping[str, PathLike], metric: str) -> None:
    """Seed means with bootstrap intervals per cell, and median PGR per intervention across tasks."""
    rows = []
    for cell in cells:
        test = pd.read_parquet(cell["test_path"])
        preds = {who: pd.read_parquet(cell[f"{who}_path"]).set_index("id").loc[test["id"], "soft_pred"].to_numpy()
                 for who in ("weak", "ceiling", "student")}
        rows.append({**{k: cell[k] for k in KEYS}, "seed": cell["seed"], "labels": test["label"].to_numpy(),
                     **{f"p_{who}": p for who, p in preds.items()}})
    agg = aggregate(pd.DataFrame(rows))
    write_text(agg.to_csv(index=False), outputs["cells"])
    write_text(median_pgr(agg, metric).to_csv(index=False), outputs["median"])
