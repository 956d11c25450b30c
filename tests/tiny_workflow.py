"""Running the real Snakefile from tests: a subprocess helper and the tiny end-to-end config."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tiny_models import tiny_bert

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile")]


def snakemake_command(workdir: Path, config: dict, *args: str) -> list[str]:
    """The Snakemake command line that runs this repository's Snakefile in `workdir` on `config` alone."""
    path = workdir / "test-config.yaml"
    path.write_text(yaml.safe_dump(config))
    return [*SNAKEMAKE, "--directory", str(workdir), *args, "--configfile", str(path), "--replace-workflow-config"]


def snakemake(workdir: Path, config: dict, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(snakemake_command(workdir, config, *args), capture_output=True, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})
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


# One cell of every kind the DAG knows: losses, probes, label sources and saliency analyses.
ALL_INTERVENTIONS = {
    "xent": {"loss": "xent"},
    "logconf": {"loss": "logconf", "alpha_max": 0.5},
    "entropy": {"loss": "entropy", "alpha": 0.5},
    "window": {"loss": "window", "radius": "midweak"},
    "s2s": {"s2s": {"from": "xent", "iterations": 2}},
    "knn_filter": {"probe": {"name": "knn", "use": "filter", "contamination": 0.2, "k": 10}},
    "logreg_relabel": {"probe": {"name": "logreg", "use": "relabel"}},
    "topo_filter": {"probe": {"name": "topo", "use": "filter", "contamination": 0.2, "k": 10}},
    "bootstrap": {"bootstrap": {"via": ["tiny"]}},
    "ensemble": {"ensemble": {"replicas": 2}},
    "lp_weak": {"saliency": {"finetune": False, "probe_labels": "weak"}},
    "lp_ground_truth": {"saliency": {"finetune": False, "probe_labels": "ground_truth"}},
    "finetune_lp_ground_truth": {"saliency": {"finetune": True, "probe_labels": "ground_truth"}},
}


def tiny_config(workdir: Path) -> dict:
    """tiny random BERT (weak) -> all-MiniLM-L6-v2 (strong, from its PyPI wheel) on SMS spam, two seeds."""
    weak_dir = tiny_bert(workdir / "tiny-bert")
    common = dict(max_length=32, batch_size=16, micro_batch_size=8, eval_batch_size=64, epochs=2)
    return {
        "tasks": ["sms_spam"],
        "seeds": [0, 1],
        "weak_models": ["tiny"],
        "strong_models": ["minilm"],
        "models": {
            "tiny": {"path": str(weak_dir), "lr": 1e-3, **common},
            "minilm": {"path": "sentence-transformers/all-MiniLM-L6-v2", "offline_package": "all-MiniLM-L6-v2",
                       "lr": 1e-4, "head_lr": 3e-3, **common},
        },
        "interventions": {
            "xent": {"loss": "xent"},
            "knn_filter": {"loss": "xent", "probe": {"name": "knn", "use": "filter", "contamination": 0.2, "k": 10}},
        },
        "splits": {"weak_train": 48, "strong_train": 64, "val": 32, "test": 64, "balance": True},
        "hub_offline": True,
    }


# A ceiling that trains long enough for a test to kill or preempt it halfway: the tiny model as the strong
# model too, 4 optimiser steps per epoch (64 examples, batch 16) and a checkpoint at every epoch's evaluation.
LONG_CEILING = "results/sms_spam/seed0/ceiling/tiny_strong"
LONG_CEILING_STEPS = 400


def long_ceiling_config(workdir: Path) -> dict:
    config = tiny_config(workdir)
    config["seeds"] = [0]
    config["strong_models"] = ["tiny_strong"]
    config["models"]["tiny_strong"] = {**config["models"]["tiny"], "epochs": LONG_CEILING_STEPS // 4}
    return config
