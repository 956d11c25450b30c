"""What rule scripts share: logs into the rule's log file, hub access, warm start, and for training rules one
helper that leases the job's GPUs and launches its stage on them.

A rule script calls `start_rule` before importing anything heavy, so that import-time warnings reach the
log and, with warm start, the script is handed to a warm worker before it imports anything; CPU-only rules
never import torch themselves.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from w2s.execution import warm
from w2s.execution.gpu_lease import JOBS_PER_GPU_ENV, lease_gpus
from w2s.execution.job import TrainingJob
from w2s.execution.launch import Stage, launch

log = logging.getLogger(__name__)


def start_rule(snakemake: Any) -> None:
    """Send logging and stderr to the rule's log file; forbid hub downloads when the config says so; pass the
    config's `jobs_per_gpu` on to this job's GPU leases. With `warm_start`, hand the rule script to this
    machine's warm worker, which runs it from the top in a process that has already imported the libraries,
    and exit with its status."""
    if snakemake.log:
        sys.stderr = open(snakemake.log[0], "a", buffering=1)
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    if snakemake.config.get("hub_offline"):
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["HF_DATASETS_OFFLINE"] = "1"
    # Through the environment, so that every lease in the job sees it, `lease_gpus` called directly too.
    os.environ[JOBS_PER_GPU_ENV] = str(snakemake.config.get("jobs_per_gpu", 1))
    # After the environment is set: the hub's offline switch is read when the libraries are imported, and the
    # worker imports them with the environment it was started in.
    if warm.in_worker():
        log.info("warm start: this job runs in a child of warm worker %d", os.getppid())
    elif snakemake.config.get("warm_start", True):
        status = warm.hand_off(sys.argv[0], sys.argv)
        if status is not None:
            sys.exit(status)
        log.info("warm start: no worker was ready; this job imports its own libraries")


def pin_torch_threads(threads: int) -> None:
    """torch computes on the job's `threads` cores, as Snakemake scheduled it."""
    import torch

    torch.set_num_threads(max(1, int(threads)))


def training_job(snakemake: Any) -> TrainingJob:
    """The job bundle from a training rule's params (see `training_params` in common.smk), its outputs and
    its attempt."""
    params = snakemake.params
    return TrainingJob(
        alias=params.alias,
        entry=params.entry,
        model_path=params.model_path,
        train_section=params.train,
        seed=params.train_seed,
        outputs=dict(snakemake.output.items()),
        attempt=snakemake.resources.attempt,
        lower_states=params.lower_states,
    )


def lease_and_launch(snakemake: Any, stage: Stage, **inputs: Any) -> None:
    """Lease the rule's GPUs and run `stage(job, **inputs)` on them, one data-parallel process per GPU."""
    pin_torch_threads(snakemake.threads)
    gpus = snakemake.resources.gpu
    with lease_gpus(gpus):
        launch(stage, training_job(snakemake), inputs, max(1, gpus))
