"""Training jobs killed in the middle of a real Snakemake run. With Snakemake (as when a node dies): nothing
looks finished, and the rerun resumes from the job's last checkpoint and ends exactly where an uninterrupted
run ends. Alone (as when CUDA runs out of memory): Snakemake retries the job with half the micro-batch, and
the retry resumes from the checkpoint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import torch

from tiny_workflow import (
    LONG_CEILING,
    LONG_CEILING_STEPS,
    long_ceiling_config,
    snakemake,
    snakemake_command,
    wait_for_file,
)
from w2s.engine.checkpoint import NAME as CHECKPOINT_FILE

pytestmark = pytest.mark.e2e

TARGET = f"{LONG_CEILING}/test.parquet"
ARGS = ("--cores", "2", TARGET)


def start(workdir, config, *args: str) -> subprocess.Popen:
    # A session of its own, so that one killpg takes Snakemake and the job it runs, and nothing else.
    return subprocess.Popen(
        snakemake_command(workdir, config, *ARGS, *args),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def kill_at_first_checkpoint(proc: subprocess.Popen, checkpoint) -> None:
    wait_for_file(checkpoint, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def rule_script_process(session: int, script: str) -> int:
    """The pid of the process of `session` that runs the rule script `script` (Snakemake runs a copy of it)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) == session and script in (entry / "cmdline").read_bytes().decode():
                return int(entry.name)
        except (ProcessLookupError, FileNotFoundError, PermissionError):
            continue
    raise AssertionError(f"no process runs {script}")


def test_sigkilled_training_job_resumes_from_its_checkpoint_on_rerun(tmp_path):
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    killed.mkdir()
    reference.mkdir()
    config = long_ceiling_config()
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

    snakemake(reference, long_ceiling_config(), *ARGS)
    uninterrupted = json.loads((reference / LONG_CEILING / "info.json").read_text())
    assert uninterrupted["resumed_from_step"] == 0
    # Bit for bit: the resumed run restored the model, optimiser, scheduler, batch stream and RNGs.
    assert info["history"] == uninterrupted["history"]
    # Its training curve holds every step once: those before the checkpoint from it, the rest from the rerun.
    assert [point["step"] for point in info["train_curve"]] == list(range(1, LONG_CEILING_STEPS + 1))
    assert info["train_curve"] == uninterrupted["train_curve"]
    pd.testing.assert_frame_equal(
        pd.read_parquet(killed / TARGET), pd.read_parquet(reference / TARGET), check_exact=True
    )


def test_a_training_job_that_dies_is_retried_with_half_the_micro_batch_and_resumes(tmp_path):
    config = long_ceiling_config()
    micro_batch = config["models"]["tiny_strong"]["micro_batch_size"]
    checkpoint = tmp_path / LONG_CEILING / "checkpoint" / CHECKPOINT_FILE
    run = start(tmp_path, config, "--retries", "1")
    wait_for_file(checkpoint, run)
    os.kill(rule_script_process(run.pid, "train_ceiling.py"), signal.SIGKILL)
    assert run.wait(timeout=600) == 0

    info = json.loads((tmp_path / LONG_CEILING / "info.json").read_text())
    assert info["train_config"]["micro_batch_size"] == micro_batch // 2
    assert info["train_config"]["batch_size"] == config["models"]["tiny_strong"]["batch_size"]
    assert 0 < info["resumed_from_step"] < info["total_steps"] == LONG_CEILING_STEPS
    assert not checkpoint.parent.exists()
    assert len(pd.read_parquet(tmp_path / TARGET)) == config["splits"]["test"]
