"""What every rule script does through w2s.execution.rules: logs into the rule's log, hub access, and the
training job bundle that a training rule leases GPUs for and launches."""

import logging
import os
import sys
from types import SimpleNamespace

from w2s.execution.job import TrainingJob
from w2s.execution.rules import lease_and_launch, start_rule, training_job


def fake_snakemake(tmp_path, gpu=0, **params):
    """The parts of Snakemake's `snakemake` object that the rule helpers read."""
    output = {"test": str(tmp_path / "test.parquet"), "info": str(tmp_path / "info.json")}
    return SimpleNamespace(
        log=[str(tmp_path / "job.log")],
        config={"hub_offline": True},
        threads=1,
        params=SimpleNamespace(
            **{"alias": "tiny", "entry": {"lr": 1e-3}, "model_path": "/models/tiny", "train": {"x": 1}},
            **{"lower_states": None, **params},
        ),
        output=SimpleNamespace(items=lambda: output.items()),
        resources=SimpleNamespace(gpu=gpu, attempt=2),
    )


def test_start_rule_sends_logs_to_the_rule_log_and_closes_the_hub(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.delenv("W2S_JOBS_PER_GPU", raising=False)  # start_rule sets it; restored after the test
    monkeypatch.setattr(sys, "stderr", sys.stderr)  # restored after the test
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    start_rule(fake_snakemake(tmp_path, train_seed=0))
    logging.getLogger("w2s.test").info("hello from the job")
    print("a warning on stderr", file=sys.stderr)
    sys.stderr.close()
    log = (tmp_path / "job.log").read_text()
    assert "hello from the job" in log and "a warning on stderr" in log
    assert os.environ["HF_HUB_OFFLINE"] == os.environ["HF_DATASETS_OFFLINE"] == "1"


def test_training_job_bundles_params_outputs_seed_and_attempt(tmp_path):
    job = training_job(fake_snakemake(tmp_path, train_seed=1007))
    states = training_job(fake_snakemake(tmp_path, train_seed=1007, lower_states="s.pt"))
    assert states.lower_states == "s.pt"
    assert job == TrainingJob(
        alias="tiny",
        entry={"lr": 1e-3},
        model_path="/models/tiny",
        train_section={"x": 1},
        seed=1007,
        outputs={"test": str(tmp_path / "test.parquet"), "info": str(tmp_path / "info.json")},
        attempt=2,
    )
    assert job.checkpoint_dir == tmp_path / "checkpoint" and job.save_dir is None


def test_a_cpu_job_runs_its_stage_once_in_place(tmp_path):
    calls = []
    lease_and_launch(
        fake_snakemake(tmp_path, train_seed=3),
        lambda job, **inputs: calls.append((job, inputs)),
        split_paths={"test": "t.parquet"},
    )
    assert len(calls) == 1
    job, inputs = calls[0]
    assert job.seed == 3 and inputs == {"split_paths": {"test": "t.parquet"}}
