"""One training job: load a model, train it on a labelled table, predict on other tables.

Weak models, ceilings and students all run through `train_and_predict`; they differ only in which tables
they are given. A student is given tables whose labels are weak labels: ground truth never enters here
except through the caller's choice of tables.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import transformers
from accelerate import Accelerator
from transformers import PreTrainedTokenizerBase

from w2s.atomic import atomic_path
from w2s.engine.batching import tokenize
from w2s.engine.losses import build_loss
from w2s.engine.modeling import Classifier, ModelSpec, load_classifier, load_tokenizer, software_versions
from w2s.engine.packing import packed_features
from w2s.engine.train import TrainConfig, infer_token_ids, make_accelerator, predict_proba, train_classifier

log = logging.getLogger(__name__)
LABEL_COLUMNS = ["id", "text", "soft_label"]


class LabelTableError(ValueError):
    pass


def check_label_table(df: pd.DataFrame, name: str) -> pd.DataFrame:
    missing = [c for c in LABEL_COLUMNS if c not in df.columns]
    if missing:
        raise LabelTableError(f"{name}: missing columns {missing} (has {list(df.columns)})")
    if df["soft_label"].isna().any() or not df["soft_label"].between(0, 1).all():
        raise LabelTableError(f"{name}: soft_label must be probabilities in [0, 1]")
    if len(df) == 0:
        raise LabelTableError(f"{name}: no examples")
    # Only these columns go further, so no other column (e.g. ground truth) can reach training.
    return df[LABEL_COLUMNS].reset_index(drop=True)


def train_config_from(model_entry: dict, train_section: dict) -> TrainConfig:
    return TrainConfig(
        lr=model_entry["lr"],
        head_lr=model_entry.get("head_lr"),
        batch_size=model_entry["batch_size"],
        micro_batch_size=model_entry["micro_batch_size"],
        eval_batch_size=model_entry["eval_batch_size"],
        epochs=model_entry["epochs"],
        max_steps=model_entry.get("max_steps"),
        max_length=model_entry["max_length"],
        compile=model_entry["compile"],
        # An entry that no schema filled in may leave the options for speed out: they stay off.
        **{
            k: model_entry[k]
            for k in ("micro_batch_tokens", "eval_batch_tokens", "packing", "compile_buckets")
            if k in model_entry
        },
        warmup_frac=train_section["warmup_frac"],
        weight_decay=train_section["weight_decay"],
        evals_per_epoch=train_section["evals_per_epoch"],
        # Absent from a `train` section that no schema filled in: a checkpoint at every evaluation.
        checkpoint_minutes=train_section.get("checkpoint_minutes", 0.0),
        select_best_on_val=train_section["select_best_on_val"],
        # Absent from a `train` section that no schema filled in: no tracker.
        trackers=tuple(train_section.get("trackers", ())),
    )


def _features(module: Classifier, inputs: dict) -> torch.Tensor:
    """The pooled features of a padded batch, or of each segment of a packed row."""
    if "cu_seqlens" in inputs:
        return packed_features(module.backbone, module.pooling, **inputs)
    return module.features(**inputs)


@dataclass(frozen=True)
class TrainedModel:
    model: Classifier
    tokenizer: PreTrainedTokenizerBase
    accelerator: Accelerator
    cfg: TrainConfig

    def predict(self, table: pd.DataFrame, name: str) -> pd.DataFrame:
        """DataFrame(id, soft_pred) for the texts of `table`."""
        p = predict_proba(
            self.model,
            self.tokenizer,
            table["text"].tolist(),
            self.cfg.inference_batching(),
            self.cfg.max_length,
            self.accelerator,
            name,
        )
        return pd.DataFrame({"id": table["id"].to_numpy(), "soft_pred": p})

    def features(self, texts: list[str]) -> np.ndarray:
        """The pooled final-layer features the head reads, one row per text in input order."""
        ids = tokenize(self.tokenizer, texts, self.cfg.max_length)
        return infer_token_ids(
            self.model,
            ids,
            self.tokenizer.pad_token_id,
            self.cfg.inference_batching(),
            self.accelerator,
            "features",
            _features,
        )

    def save(self, save_dir: str | os.PathLike) -> None:
        self.tokenizer.save_pretrained(save_dir)
        with atomic_path(Path(save_dir) / "classifier.pt") as tmp:
            torch.save(self.accelerator.unwrap_model(self.model).state_dict(), tmp)


def _start_trackers(accelerator: Accelerator, cfg: TrainConfig, run: dict, log_dir: Path) -> None:
    """Open the run's tracker logs under `log_dir`; W&B offline, for `wandb sync` to upload later."""
    log_dir.mkdir(parents=True, exist_ok=True)
    # TensorBoard keeps hyperparameters of plain types only, and no None.
    settings = {k: v for k, v in vars(cfg).items() if k != "trackers" and v is not None}
    accelerator.init_trackers(
        "w2s",
        config={**settings, **run},
        init_kwargs={"wandb": {"mode": "offline", "dir": str(log_dir), "name": str(log_dir.parent)}},
    )


def train_model(
    spec: ModelSpec,
    cfg: TrainConfig,
    train: pd.DataFrame,
    val: pd.DataFrame | None,
    seed: int,
    loss: str = "xent",
    loss_params: dict | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
) -> tuple[TrainedModel, dict]:
    """Train `spec` on `train` (selected on `val`); return the model and the run's info. With
    `checkpoint_dir`, training checkpoints there and resumes from a checkpoint it finds. The trackers of
    `cfg` write to `trackers/` beside the checkpoint directory (the job's folder)."""
    train = check_label_table(train, "train labels")
    val = None if val is None else check_label_table(val, "val labels")
    log_dir = None
    if cfg.trackers:
        if checkpoint_dir is None:
            raise ValueError("train.trackers: a training without a checkpoint directory has no job folder to log to")
        log_dir = Path(checkpoint_dir).parent / "trackers"
    transformers.set_seed(seed)
    accelerator = make_accelerator(cfg.trackers, log_dir)
    if log_dir is not None:
        _start_trackers(accelerator, cfg, {"model": spec.alias, "seed": seed, "loss": loss}, log_dir)
    loading = time.perf_counter()
    tokenizer = load_tokenizer(spec)
    model = load_classifier(spec, device=accelerator.device).to(accelerator.device)
    load_seconds = time.perf_counter() - loading
    started = time.time()
    loss_fn = build_loss(loss, train_labels=train["soft_label"].to_numpy(), **(loss_params or {}))
    history = train_classifier(
        model,
        tokenizer,
        train,
        val,
        loss_fn,
        cfg,
        seed,
        accelerator,
        checkpoint_dir=None if checkpoint_dir is None else Path(checkpoint_dir),
    )
    # Not accelerator.end_training(): it would also end the process group that predicting still needs.
    for tracker in accelerator.trackers:
        tracker.finish()
    info = {
        "model": spec.alias,
        "model_path": spec.path,
        "seed": seed,
        "loss": loss,
        "loss_params": loss_params or {},
        "train_config": cfg.__dict__,
        "n_train": len(train),
        "n_val": 0 if val is None else len(val),
        "device": str(accelerator.device),
        "wall_seconds": time.time() - started,
        "load_seconds": load_seconds,
        "versions": software_versions(),
        **history,
    }
    return TrainedModel(model, tokenizer, accelerator, cfg), info


def train_and_predict(
    spec: ModelSpec,
    cfg: TrainConfig,
    train: pd.DataFrame,
    val: pd.DataFrame | None,
    predict_on: dict[str, pd.DataFrame],
    seed: int,
    loss: str = "xent",
    loss_params: dict | None = None,
    save_dir: str | os.PathLike | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
) -> tuple[dict[str, pd.DataFrame], dict]:
    """Train `spec` on `train` and return ({name: DataFrame(id, soft_pred)}, run info)."""
    trained, info = train_model(spec, cfg, train, val, seed, loss, loss_params, checkpoint_dir)
    preds = {name: trained.predict(table, name) for name, table in predict_on.items()}
    if save_dir is not None:
        trained.save(save_dir)
    return preds, info
