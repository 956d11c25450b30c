"""Running the real Snakefile from tests: a subprocess helper and the tiny end-to-end config."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]


def snakemake_command(workdir: Path, config: dict, *args: str) -> list[str]:
    """The Snakemake command line that runs this repository's Snakefile in `workdir` on `config` alone."""
    path = workdir / "test-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return [*SNAKEMAKE, "--directory", str(workdir), *args, "--configfile", str(path)]


def snakemake(workdir: Path, config: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        snakemake_command(workdir, config, *args),
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-5000:]}\n{proc.stderr[-5000:]}")
    return proc


def wait_for_file(path: Path, proc: subprocess.Popen, timeout_s: float = 600) -> None:
    """Until `path` exists, as long as the run `proc` goes on."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert proc.poll() is None, f"the run ended before {path} appeared"
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout_s} s"
        time.sleep(0.02)


# The tiny end-to-end config of the Snakemake convention (`snakemake --directory .test`): every intervention
# kind on a tiny random BERT (weak, committed beside it) -> MiniLM (strong, from its PyPI wheel) on SMS spam.
TEST_DIR = ROOT / ".test"
TINY_BERT = TEST_DIR / "models" / "tiny-bert"


def e2e_config() -> dict:
    """The .test config, its tiny models' paths made absolute so that it runs in any working directory."""
    config = yaml.safe_load((TEST_DIR / "config" / "config.yaml").read_text())
    for entry in config["models"].values():
        if entry["path"].startswith("./"):
            entry["path"] = str(TEST_DIR / entry["path"])
    return config


def tiny_config() -> dict:
    """The .test config with two cells only (xent and a kNN filter), for tests that need a short real run."""
    config = e2e_config()
    config["interventions"] = {k: config["interventions"][k] for k in ("xent", "knn_filter")}
    return config


# A ceiling that trains long enough for a test to kill or preempt it halfway: the tiny model as the strong
# model too, 4 optimiser steps per epoch (64 examples, batch 16) and a checkpoint at every epoch's evaluation
# (checkpoint_minutes 0).
LONG_CEILING = "results/sms_spam/seed0/ceiling/tiny_strong"
LONG_CEILING_STEPS = 400


def long_ceiling_config() -> dict:
    config = tiny_config()
    config["seeds"] = [0]
    config["strong_models"] = ["tiny_strong"]
    config["models"]["tiny_strong"] = {**config["models"]["tiny"], "epochs": LONG_CEILING_STEPS // 4}
    config["train"] = {**config.get("train", {}), "checkpoint_minutes": 0}
    return config


def one_cell_config(model_path: Path, entry: dict, name: str = "x") -> dict:
    """The smallest config: one offline task, one seed, one local model as weak and strong, one cell `name`."""
    return {
        "tasks": ["sms_spam"],
        "seeds": [0],
        "weak_models": ["m"],
        "strong_models": ["m"],
        "models": {"m": {"path": str(model_path)}},
        "interventions": {name: entry},
    }
