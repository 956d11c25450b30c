"""Training stages on torch: the weak supervisor, the ceiling, students, bootstrap steps, the finetuned
saliency probe, and the frozen activations probes read.

A training stage takes the rule's `TrainingJob` first and its input paths as keywords, so that
`w2s.execution.launch` can run it in several data-parallel processes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd
import torch

from w2s.atomic import write_json, write_parquet
from w2s.data.activations import save_activations
from w2s.engine.activations import extract_activations
from w2s.engine.checkpoint import remove_checkpoints
from w2s.engine.finetune import train_and_predict, train_config_from, train_model
from w2s.engine.lower_states import compute_lower_states
from w2s.engine.modeling import ModelSpec, load_backbone, load_tokenizer
from w2s.engine.train import TrainConfig
from w2s.execution.job import TrainingJob
from w2s.execution.ranks import is_main_process
from w2s.labels.conflict import with_conflict
from w2s.labels.interventions import Intervention
from w2s.labels.linear_probe import probe_and_predict, probe_targets
from w2s.labels.tables import ground_truth_labels, weak_label_table
from w2s.layout import LABELLED_SPLITS, SPLITS, STRONG_SPLITS
from w2s.stages.labels import read_tables

PathLike = str | Path


def job_model(job: TrainingJob) -> tuple[ModelSpec, TrainConfig]:
    """The model and its training config; a retried job (attempt > 1, e.g. after CUDA running out of memory)
    trains with smaller micro-batches and the same effective batch."""
    spec = ModelSpec.from_config(job.alias, job.entry, job.model_path, job.lower_states)
    return spec, train_config_from(job.entry, job.train_section).for_attempt(job.attempt)


def publish(preds: Mapping[str, pd.DataFrame], record: dict, job: TrainingJob) -> None:
    """Write a training job's predictions and info, then drop its checkpoints. In a data-parallel job every
    process holds the same predictions; only the main one writes."""
    if not is_main_process():
        return
    for name, table in preds.items():
        write_parquet(table, job.outputs[name])
    write_json(record, job.outputs["info"])
    remove_checkpoints(job.checkpoint_dir)


def _train_and_publish(
    job: TrainingJob,
    train: pd.DataFrame,
    val: pd.DataFrame,
    predict_on: Mapping[str, pd.DataFrame],
    record: dict,
    cell: Intervention | None = None,
) -> None:
    spec, cfg = job_model(job)
    loss = {} if cell is None else {"loss": cell.loss, "loss_params": cell.loss_params}
    preds, info = train_and_predict(
        spec,
        cfg,
        train,
        val,
        dict(predict_on),
        job.seed,
        **loss,
        save_dir=job.save_dir,
        checkpoint_dir=job.checkpoint_dir,
    )
    publish(preds, {**record, **info, "lower_states": job.lower_states}, job)


def weak_stage(job: TrainingJob, split_paths: Mapping[str, PathLike]) -> None:
    """Train on weak_train ground truth; write soft predictions on strong_train, val and test."""
    splits = read_tables({name: split_paths[name] for name in SPLITS})
    predict_on = {name: splits[name] for name in STRONG_SPLITS}
    _train_and_publish(
        job, ground_truth_labels(splits["weak_train"]), ground_truth_labels(splits["val"]), predict_on, {"role": "weak"}
    )


def ceiling_stage(job: TrainingJob, split_paths: Mapping[str, PathLike]) -> None:
    """Train the strong model on strong_train ground truth; write soft predictions on test."""
    splits = read_tables({name: split_paths[name] for name in STRONG_SPLITS})
    _train_and_publish(
        job,
        ground_truth_labels(splits["strong_train"]),
        ground_truth_labels(splits["val"]),
        {"test": splits["test"]},
        {"role": "ceiling"},
    )


def student_training_labels(
    cell: Intervention,
    labels: Mapping[str, pd.DataFrame],
    primary_ids: pd.Series,
    conflict_split: PathLike | None,
    seed: int,
) -> tuple[pd.DataFrame, dict]:
    """What a student trains on: its cell's label table, plus the conflict task's ground truth where the cell
    has a conflict (never a primary-task text: `primary_ids` are every id the student meets in its task);
    and where those rows come from, for its info.json."""
    primary = {"source": cell.kind, "n": len(labels["train"])}
    if cell.conflict is None:
        return labels["train"], {"primary": primary, "conflict": None}
    if conflict_split is None:
        raise ValueError(f"intervention {cell.name} has a conflict, but the job was given no conflict split")
    train, conflict = with_conflict(labels["train"], pd.read_parquet(conflict_split), cell.conflict, primary_ids, seed)
    return train, {"primary": primary, "conflict": conflict}


def student_stage(
    job: TrainingJob,
    label_paths: Mapping[str, PathLike],
    predict_paths: Mapping[str, PathLike],
    intervention: dict,
    conflict_split: PathLike | None = None,
) -> None:
    """Train the strong student on the label tables (never the primary task's ground truth; with a conflict,
    also the conflict task's strong_train `conflict_split`) under the intervention's loss; write its
    predictions on every split in `predict_paths` (test; strong_train and val too when a strong-to-strong
    successor relabels with it)."""
    cell = Intervention(**intervention)
    labels = read_tables(label_paths)
    predict_on = {name: table[["id", "text"]] for name, table in read_tables(predict_paths).items()}
    seen = pd.concat([t["id"] for t in (*labels.values(), *predict_on.values())])
    train, provenance = student_training_labels(cell, labels, seen, conflict_split, job.seed)
    _train_and_publish(
        job,
        train,
        labels["val"],
        predict_on,
        {"role": "student", "intervention": intervention, "train_labels": provenance},
        cell,
    )


def bootstrap_step_stage(
    job: TrainingJob,
    split_paths: Mapping[str, PathLike],
    label_preds: Mapping[str, PathLike],
    intervention: dict,
    step: int,
) -> None:
    """One intermediate model of a bootstrap chain: trained on the previous step's soft predictions for
    strong_train (selected on val's), it relabels strong_train and val for the next step; its test
    predictions record how good a supervisor it became."""
    splits = read_tables(split_paths)
    prev = read_tables(label_preds)
    train, val = (weak_label_table(splits[n], prev[n]) for n in LABELLED_SPLITS)
    predict_on = {n: splits[n][["id", "text"]] for n in STRONG_SPLITS}
    _train_and_publish(
        job,
        train,
        val,
        predict_on,
        {"role": "bootstrap_step", "step": step, "intervention": intervention},
        Intervention(**intervention),
    )


def finetune_probe_stage(
    job: TrainingJob,
    label_paths: Mapping[str, PathLike],
    split_paths: Mapping[str, PathLike],
    weak_preds: Mapping[str, PathLike],
    intervention: dict,
    conflict_split: PathLike | None = None,
) -> None:
    """Saliency: finetune the student on weak labels (and, with a conflict, the conflict task's ground truth
    from `conflict_split`), then fit a linear probe on its own pooled features.

    With probe_labels ground_truth, strong_train's ground truth is read after training, by the probe only:
    the analysis asks whether the finetuned features still hold what the weak labels got wrong.
    """
    cell = Intervention(**intervention)
    saliency = cell.entry["saliency"]
    spec, cfg = job_model(job)
    labels = read_tables(label_paths)
    splits = read_tables(split_paths)
    seen = pd.concat([t["id"] for t in (*labels.values(), *splits.values())])
    train, provenance = student_training_labels(cell, labels, seen, conflict_split, job.seed)
    trained, info = train_model(
        spec,
        cfg,
        train,
        labels["val"],
        job.seed,
        cell.loss,
        cell.loss_params,
        checkpoint_dir=job.checkpoint_dir,
    )
    features = {n: trained.features(t["text"].tolist()) for n, t in splits.items()}
    targets = probe_targets(splits, saliency["probe_labels"], read_tables(weak_preds))
    pred, probe_info = probe_and_predict(features, targets, splits["test"], saliency)
    publish(
        {"test": pred},
        {
            "role": "finetune_probe",
            "intervention": intervention,
            "features": "finetuned student",
            "train_labels": provenance,
            **probe_info,
            **info,
            "lower_states": job.lower_states,
        },
        job,
    )


def activations_stage(
    split_paths: list[PathLike],
    model_path: str,
    pooling: str,
    max_length: int,
    layers: list[int] | None,
    batch_size: int,
    out: PathLike,
) -> None:
    """Frozen pretrained features of every example in `split_paths` (all seeds' strong_train and val), once."""
    examples = pd.concat([pd.read_parquet(p)[["id", "text"]] for p in split_paths]).drop_duplicates("id")
    acts = extract_activations(model_path, examples["text"].tolist(), layers, pooling, max_length, batch_size)
    save_activations(acts, examples["id"].tolist(), out)


def lower_states_stage(split_paths: list[PathLike], alias: str, entry: dict, model_path: str, out: PathLike) -> None:
    """The states after the frozen lower blocks of model `alias` for every text of `split_paths`, once."""
    texts = pd.concat([pd.read_parquet(p)["text"] for p in split_paths]).tolist()
    spec = ModelSpec(alias=alias, path=model_path, max_length=entry["max_length"])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    lower = compute_lower_states(
        load_backbone(spec),
        load_tokenizer(spec),
        texts,
        entry["frozen_layers"],
        entry["max_length"],
        entry["eval_batch_size"],
        device,
        key=f"models.{alias}.frozen_layers",
    )
    lower.save(out)
