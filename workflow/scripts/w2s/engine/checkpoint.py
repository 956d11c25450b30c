"""Training checkpoints, so that a killed or preempted job resumes where it stopped instead of from zero.

A checkpoint is one file renamed into place once it is completely written and flushed to disk: a job killed
at any moment, mid-save included, leaves the previous complete checkpoint or the new one, never a partial
file under the checkpoint's name. A fingerprint of the run's settings and data is stored in it, so that a
checkpoint left by a run with another config or other data is ignored rather than resumed.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from w2s.atomic import atomic_path

log = logging.getLogger(__name__)
NAME = "checkpoint.pt"


def fingerprint(settings: dict[str, Any], *arrays: np.ndarray) -> str:
    """A digest of JSON-able settings and arrays (their dtype, shape and contents)."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype}{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def save_checkpoint(state: dict[str, Any], directory: str | os.PathLike) -> Path:
    directory = Path(directory)
    # Temporary files of saves that were killed are never read; they only take disk space.
    for stale in directory.glob(f".{NAME}.*.part"):
        stale.unlink(missing_ok=True)
    path = directory / NAME
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            torch.save(state, f)
            f.flush()
            # Without fsync a node crash right after the rename could leave a renamed but empty file.
            os.fsync(f.fileno())
    return path


def load_checkpoint(directory: str | os.PathLike, expected_fingerprint: str) -> dict[str, Any] | None:
    """The checkpoint in `directory` if there is one and it belongs to this run, else None."""
    path = Path(directory) / NAME
    if not path.exists():
        return None
    # Written by this job itself in its own directory, so unpickling it (numpy RNG state, loss state) is safe.
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("fingerprint") != expected_fingerprint:
        log.warning("ignoring %s: it was written by a run with other settings or data", path)
        return None
    return state


def remove_checkpoints(directory: str | os.PathLike) -> None:
    """Delete a job's checkpoint directory; call it once the job's outputs are written."""
    directory = Path(directory)
    if directory.exists():
        shutil.rmtree(directory)


def process_state(loss_fn: object, device: torch.device) -> dict[str, Any]:
    """What differs between the processes of one run: RNG streams (dropout) and the loss's own state.

    The loss's attributes are kept as serialised bytes so that tensors on a GPU travel between processes
    (and into the file) without naming a device that the reader may not have.
    """
    loss_bytes = io.BytesIO()
    torch.save(vars(loss_fn), loss_bytes)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "loss": loss_bytes.getvalue(),
    }


def restore_process_state(state: dict[str, Any], loss_fn: object, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state["cuda"] is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    # Processes on CPUs may name their device "cpu:0", which torch.load does not accept as a location.
    location = "cpu" if device.type == "cpu" else device
    vars(loss_fn).update(torch.load(io.BytesIO(state["loss"]), map_location=location, weights_only=False))
