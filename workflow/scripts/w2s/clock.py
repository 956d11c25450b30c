"""When a job began: its process's start or, for a job forked from a warm worker (w2s.execution.warm), the
start of the process that Snakemake started for it, which hands the time on in $W2S_JOB_START_TIME."""

from __future__ import annotations

import os
import time

import psutil

JOB_START_ENV = "W2S_JOB_START_TIME"


def process_start_time() -> float:
    """When this process started, in seconds since the epoch."""
    return psutil.Process().create_time()


def job_seconds() -> float:
    """Seconds since this job began: a job's imports, model load and tokenization come before its first
    training step, and how long they take is its start-up."""
    started = os.environ.get(JOB_START_ENV)
    return time.time() - (float(started) if started else process_start_time())
