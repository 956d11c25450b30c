"""The bundle every training rule hands to its stage: which model, how to train it, and where its outputs go.

It is plain data (JSON in, JSON out), so that `w2s.execution.launch` can pass it to data-parallel processes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class TrainingJob:
    alias: str  # the model's key under `models` in the config
    entry: dict  # that model's config entry (learning rate, batch sizes, LoRA, ...)
    model_path: str  # where the pretrained weights load from: a hub id or a directory
    train_section: dict  # the config's `train` section, shared by every model
    seed: int
    outputs: dict[str, str] = field(default_factory=dict)  # output name -> path; `info` is always one
    attempt: int = 1  # Snakemake's attempt: a retry trains with smaller micro-batches
    lower_states: str | None = None  # the states file a model with frozen_layers reads (w2s.engine.lower_states)

    @property
    def checkpoint_dir(self) -> Path:
        """Beside the job's outputs but not one of them, so Snakemake keeps it when a job fails or is killed
        and the rerun resumes from it."""
        return Path(self.outputs["info"]).parent / "checkpoint"

    @property
    def save_dir(self) -> Path | None:
        """Weights are written only on request: every prediction is made inside the training job."""
        return Path(self.outputs["info"]).parent / "model" if self.train_section.get("keep_weights") else None

    def to_json(self) -> dict:
        return asdict(self)
