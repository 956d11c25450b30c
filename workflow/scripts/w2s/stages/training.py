"""One plain function per DAG stage: read input files, compute, write output files atomically.

Rule scripts are thin adapters from the `snakemake` object to these functions; tests call them directly.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from w2s.engine.activations import extract_activations, load_activations, save_activations
from w2s.atomic import write_json, write_parquet, write_text
from w2s.engine.checkpoint import remove_checkpoints
from w2s.execution.launch import is_main_process
from w2s.labels.interventions import Intervention
from w2s.engine.finetune import ground_truth_labels, train_and_predict, train_config_from, train_model
from w2s.labels.linear_probe import fit_linear_probe
from w2s.scoring import cell_metrics
from w2s.engine.modeling import ModelSpec
from w2s.labels.probe_transform import features_for, probe_label_tables, probe_report
from w2s.data.splits import SPLIT_NAMES, make_splits
from w2s.analysis.statistics import KEYS, aggregate, median_pgr
from w2s.data.tasks import load_task

PathLike = str | Path


def splits_stage(task: str, raw_path: PathLike | None, sizes: Mapping[str, int], seed: int, balance: bool,
                 outputs: Mapping[str, PathLike]) -> None:
    splits = make_splits(load_task(task, Path(raw_path) if raw_path else None), dict(sizes), seed, balance, task)
    for name in SPLIT_NAMES:
        write_parquet(splits[name], outputs[name])


def _model(alias: str, entry: dict, path: str, train_section: dict, attempt: int):
    """The model and its training config; a retried job (attempt > 1, e.g. after CUDA running out of memory)
    trains with smaller micro-batches and the same effective batch."""
    return ModelSpec.from_config(alias, entry, path), train_config_from(entry, train_section).for_attempt(attempt)


def _checkpoint_dir(outputs: Mapping[str, PathLike]) -> Path:
    """Beside the job's outputs but not one of them, so Snakemake keeps it when a job fails or is killed and
    the rerun resumes from it."""
    return Path(outputs["info"]).parent / "checkpoint"


def _publish(preds: Mapping[str, pd.DataFrame], record: dict, outputs: Mapping[str, PathLike]) -> None:
    """Write a training job's predictions and info, then drop its checkpoints. In a data-parallel job every
    process holds the same predictions; only the main one writes."""
    if not is_main_process():
        return
    for name, table in preds.items():
        write_parquet(table, outputs[name])
    write_json(record, outputs["info"])
    remove_checkpoints(_checkpoint_dir(outputs))


def _save_dir(train_section: dict, outputs: Mapping[str, PathLike]) -> Path | None:
    """Weights are written only on request: every prediction is made inside the training job."""
    return Path(outputs["info"]).parent / "model" if train_section.get("keep_weights") else None


def weak_stage(split_paths: Mapping[str, PathLike], alias: str, entry: dict, model_path: str, train_section: dict,
               seed: int, outputs: Mapping[str, PathLike], attempt: int = 1) -> None:
    """Train on weak_train ground truth; write soft predictions on strong_train, val and test."""
    spec, cfg = _model(alias, entry, model_path, train_section, attempt)
    splits = {name: pd.read_parquet(split_paths[name]) for name in SPLIT_NAMES}
    predict_on = {name: splits[name] for name in ("strong_train", "val", "test")}
    preds, info = train_and_predict(spec, cfg, ground_truth_labels(splits["weak_train"]),
                                    ground_truth_labels(splits["val"]), predict_on, seed,
                                    save_dir=_save_dir(train_section, outputs), checkpoint_dir=_checkpoint_dir(outputs))
    _publish(preds, {"role": "weak", **info}, outputs)


def ceiling_stage(split_paths: Mapping[str, PathLike], alias: str, entry: dict, model_path: str,
                  train_section: dict, seed: int, outputs: Mapping[str, PathLike], attempt: int = 1) -> None:
    """Train the strong model on strong_train ground truth; write soft predictions on test."""
    spec, cfg = _model(alias, entry, model_path, train_section, attempt)
    train, val, test = (pd.read_parquet(split_paths[n]) for n in ("strong_train", "val", "test"))
    preds, info = train_and_predict(spec, cfg, ground_truth_labels(train), ground_truth_labels(val),
                                    {"test": test}, seed, save_dir=_save_dir(train_section, outputs),
                                    checkpoint_dir=_checkpoint_dir(outputs))
    _publish(preds, {"role": "ceiling", **info}, outputs)


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


def _read_inputs(paths: Mapping[str, PathLike]) -> dict[str, pd.DataFrame]:
    return {name: pd.read_parquet(path) for name, path in paths.items()}


def student_stage(label_paths: Mapping[str, PathLike], predict_paths: Mapping[str, PathLike], alias: str,
                  entry: dict, model_path: str, train_section: dict, intervention: dict, seed: int,
                  outputs: Mapping[str, PathLike], attempt: int = 1) -> None:
    """Train the strong student on the label tables (never ground truth) under the intervention's loss;
    write its predictions on every split in `predict_paths` (test; strong_train and val too when a
    strong-to-strong successor relabels with it)."""
    cell = Intervention(**intervention)
    spec, cfg = _model(alias, entry, model_path, train_section, attempt)
    labels = _read_inputs(label_paths)
    predict_on = {name: table[["id", "text"]] for name, table in _read_inputs(predict_paths).items()}
    preds, info = train_and_predict(spec, cfg, labels["train"], labels["val"], predict_on, seed, cell.loss,
                                    cell.loss_params, save_dir=_save_dir(train_section, outputs),
                                    checkpoint_dir=_checkpoint_dir(outputs))
    _publish(preds, {"role": "student", "intervention": intervention, **info}, outputs)


def bootstrap_step_stage(split_paths: Mapping[str, PathLike], label_preds: Mapping[str, PathLike], alias: str,
                         entry: dict, model_path: str, train_section: dict, intervention: dict, step: int,
                         seed: int, outputs: Mapping[str, PathLike], attempt: int = 1) -> None:
    """One intermediate model of a bootstrap chain: trained on the previous step's soft predictions for
    strong_train (selected on val's), it relabels strong_train and val for the next step; its test
    predictions record how good a supervisor it became."""
    cell = Intervention(**intervention)
    spec, cfg = _model(alias, entry, model_path, train_section, attempt)
    splits = _read_inputs(split_paths)
    prev = _read_inputs(label_preds)
    train, val = (weak_label_table(splits[n], prev[n]) for n in ("strong_train", "val"))
    predict_on = {n: splits[n][["id", "text"]] for n in ("strong_train", "val", "test")}
    preds, info = train_and_predict(spec, cfg, train, val, predict_on, seed, cell.loss, cell.loss_params,
                                    save_dir=_save_dir(train_section, outputs), checkpoint_dir=_checkpoint_dir(outputs))
    _publish(preds, {"role": "bootstrap_step", "step": step, "intervention": intervention, **info}, outputs)


def mean_predictions(tables: list[pd.DataFrame]) -> pd.DataFrame:
    """Per-id mean soft prediction of several supervisors, which must all cover the same examples."""
    ids = set(tables[0]["id"])
    if any(set(t["id"]) != ids for t in tables[1:]):
        raise ValueError("ensemble members predicted on different examples; rerun their weak models")
    return pd.concat(tables)[["id", "soft_pred"]].groupby("id", as_index=False, sort=False)["soft_pred"].mean()


def ensemble_labels_stage(strong_train: PathLike, val: PathLike, members: list[Mapping[str, PathLike]],
                          outputs: Mapping[str, PathLike]) -> None:
    """The mean soft label of several weak supervisors on strong_train and val (no ground truth column)."""
    for name, split in (("train", strong_train), ("val", val)):
        split_name = "strong_train" if name == "train" else "val"
        mean = mean_predictions([pd.read_parquet(m[split_name]) for m in members])
        write_parquet(weak_label_table(pd.read_parquet(split), mean), outputs[name])


def _probe_targets(splits: Mapping[str, pd.DataFrame], probe_labels: str,
                   weak: Mapping[str, pd.DataFrame]) -> dict[str, np.ndarray]:
    """The labels a saliency probe is fit and selected on: ground truth, or the weak soft labels."""
    if probe_labels == "ground_truth":
        return {n: splits[n]["label"].to_numpy(dtype=np.float64) for n in ("strong_train", "val")}
    return {n: weak_label_table(splits[n], weak[n])["soft_label"].to_numpy() for n in ("strong_train", "val")}


def _probe_and_predict(features: Mapping[str, np.ndarray], targets: Mapping[str, np.ndarray],
                       test: pd.DataFrame, saliency: dict) -> tuple[pd.DataFrame, dict]:
    model, C, scores = fit_linear_probe(features["strong_train"], targets["strong_train"], features["val"],
                                        targets["val"], saliency["C"])
    pred = pd.DataFrame({"id": test["id"].to_numpy(), "soft_pred": model.predict_proba(features["test"])[:, 1]})
    return pred, {"probe_labels": saliency["probe_labels"], "C": C,
                  "val_cross_entropy": {str(c): v for c, v in scores.items()}}


def linear_probe_stage(split_paths: Mapping[str, PathLike], activations: PathLike, weak_preds: Mapping[str, PathLike],
                       intervention: dict, outputs: Mapping[str, PathLike]) -> None:
    """Saliency: a linear probe on the pretrained strong model's frozen activations, fit on strong_train's
    weak labels or ground truth, predicting test. No student is trained."""
    saliency = intervention["entry"]["saliency"]
    splits = _read_inputs(split_paths)
    act_ids, acts = load_activations(activations)
    features = {n: features_for(t["id"], act_ids, acts) for n, t in splits.items()}
    targets = _probe_targets(splits, saliency["probe_labels"], _read_inputs(weak_preds))
    pred, info = _probe_and_predict(features, targets, splits["test"], saliency)
    write_parquet(pred, outputs["test"])
    write_json({"role": "linear_probe", "intervention": intervention, "features": "frozen pretrained", **info},
               outputs["info"])


def finetune_probe_stage(label_paths: Mapping[str, PathLike], split_paths: Mapping[str, PathLike],
                         weak_preds: Mapping[str, PathLike], alias: str, entry: dict, model_path: str,
                         train_section: dict, intervention: dict, seed: int, outputs: Mapping[str, PathLike],
                         attempt: int = 1) -> None:
    """Saliency: finetune the student on weak labels, then fit a linear probe on its own pooled features.

    With probe_labels ground_truth, strong_train's ground truth is read after training, by the probe only:
    the analysis asks whether the finetuned features still hold what the weak labels got wrong.
    """
    cell = Intervention(**intervention)
    saliency = cell.entry["saliency"]
    spec, cfg = _model(alias, entry, model_path, train_section, attempt)
    labels = _read_inputs(label_paths)
    trained, info = train_model(spec, cfg, labels["train"], labels["val"], seed, cell.loss, cell.loss_params,
                                checkpoint_dir=_checkpoint_dir(outputs))
    splits = _read_inputs(split_paths)
    features = {n: trained.features(t["text"].tolist()) for n, t in splits.items()}
    targets = _probe_targets(splits, saliency["probe_labels"], _read_inputs(weak_preds))
    pred, probe_info = _probe_and_predict(features, targets, splits["test"], saliency)
    _publish({"test": pred}, {"role": "finetune_probe", "intervention": intervention, "features": "finetuned student",
                              **probe_info, **info}, outputs)


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
