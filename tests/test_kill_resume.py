"""A training job SIGKILLed in the middle of a real Snakemake run, Snakemake with it (as when a node dies):
nothing looks finished, and the rerun resumes from the job's last checkpoint and ends exactly where an
uninterrupted run ends."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pandas as pd
import pytest
import torch
import yaml

from tiny_workflow import LONG_CEILING, LONG_CEILING_STEPS, SNAKEMAKE, long_ceiling_config, snakemake
from w2s.checkpoint import NAME as CHECKPOINT_FILE

pytestmark = pytest.mark.e2e

TARGET = f"{LONG_CEILING}/test.parquet"
ARGS = ("--cores", "2", TARGET)


def start(workdir, config) -> subprocess.Popen:
    path = workdir / "test-config.yaml"
    path.write_text(yaml.safe_dump(config))
    cmd = [*SNAKEMAKE, "--directory", str(workdir), *ARGS, "--configfile", str(path), "--replace-workflow-config"]
    # A session of its own, so that one killpg takes Snakemake and the job it runs, and nothing else.
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def kill_at_first_checkpoint(proc: subprocess.Popen, checkpoint, timeout_s: float = 600) -> None:
    deadline = time.monotonic() + timeout_s
    while not checkpoint.exists():
        assert proc.poll() is None, "the run ended before its ceiling wrote a checkpoint"
        assert time.monotonic() < deadline, "no checkpoint within the time limit"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_sigkilled_training_job_resumes_from_its_checkpoint_on_rerun(tmp_path):
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    killed.mkdir()
    reference.mkdir()
    config = long_ceiling_config(killed)
    checkpoint = killed / LONG_CEILING / "checkpoint" / CHECKPOINT_FILE

    kill_at_first_checkpoint(start(killed, config), checkpoint)

    assert not (killed / TARGET).exists() and not (killed / LONG_CEILING / "info.json").exists()
    saved = torch.load(checkpoint, weights_only=False)
    assert 0 < saved["step"] < LONG_CEILING_STEPS

    # Snakemake died holding its lock; --unlock releases it, and the profiles' rerun-incomplete (given here
    # by hand) lets the rerun redo the job that the kill left half done.
    snakemake(killed, config, "--unlock")
    snakemake(killed, config, *ARGS, "--rerun-incomplete")
    info = json.loads((killed / LONG_CEILING / "info.json").read_text())
    assert info["resumed_from_step"] == saved["step"]
    assert info["total_steps"] == LONG_CEILING_STEPS
    assert not checkpoint.parent.exists()

    snakemake(reference, long_ceiling_config(reference), *ARGS)
    uninterrupted = json.loads((reference / LONG_CEILING / "info.json").read_text())
    assert uninterrupted["resumed_from_step"] == 0
    # Bit for bit: the resumed run restored the model, optimiser, scheduler, batch stream and RNGs.
    assert info["history"] == uninterrupted["history"]
    pd.testing.assert_frame_equal(pd.read_parquet(killed / TARGET), pd.read_parquet(reference / TARGET),
                                  check_exact=True)
