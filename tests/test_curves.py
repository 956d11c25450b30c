"""Training curves: every training job records the loss of each optimizer step and the metrics of each
evaluation, exactly once across a kill and a resume; experiment trackers get the same values; the curves
rule draws them per task, model pair and seed."""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from test_checkpoint import Killed, kill_at_step
from test_train import toy, train_tiny
from tiny_models import tiny_bert, train_config
from tiny_workflow import e2e_config, snakemake
from w2s import layout
from w2s.analysis.curves import KEPT, build_figure, plot_curves, read_curves
from w2s.config import validate_config
from w2s.engine.batching import collate, tokenize
from w2s.engine.finetune import train_model
from w2s.engine.losses import build_loss
from w2s.engine.modeling import ModelSpec, load_classifier, load_tokenizer
from w2s.engine.train import BatchStream, make_accelerator
from w2s.labels.interventions import intervention_cells, sweep

pytest_plugins = ["finished_run"]

# 12 examples in batches of 4 over 2 epochs: 6 steps, evaluated at steps 3 and 6.
CFG = train_config(lr=1e-3, batch_size=4, micro_batch_size=2, eval_batch_size=16, max_length=16)


@pytest.fixture(scope="module")
def bert_path(tmp_path_factory):
    return str(tiny_bert(tmp_path_factory.mktemp("bert")))


def steps(curve: list[dict]) -> list[int]:
    return [point["step"] for point in curve]


def test_each_step_records_the_mean_loss_over_its_effective_batch(tmp_path):
    path = str(tiny_bert(tmp_path / "bert", dropout=0.0))
    train = toy(1)
    # Micro-batches of 3 cut the first batch of 4 into 3 + 1: the record must be the mean over all 4.
    cfg = train_config(lr=1e-3, batch_size=4, micro_batch_size=3, epochs=1, max_length=16)
    _, info = train_tiny(path, cfg, train)
    assert steps(info["train_curve"]) == [1, 2, 3]

    spec = ModelSpec("tiny", path)
    model, tokenizer = load_classifier(spec), load_tokenizer(spec)
    ids = tokenize(tokenizer, train["text"].tolist(), 16)
    first = next(BatchStream([len(t) for t in ids], 4, seed=0))
    with torch.no_grad():
        logits = model(**collate([ids[i] for i in first], tokenizer.pad_token_id))
    by_hand = build_loss("xent")(logits, torch.tensor(train["soft_label"].to_numpy()[first]), 0.0)
    assert info["train_curve"][0]["train_loss"] == pytest.approx(by_hand.item(), rel=1e-5)


def test_a_killed_and_resumed_training_records_every_step_exactly_once(bert_path, tmp_path, monkeypatch):
    train, val = toy(1), toy(1).iloc[::2]

    def run(**kwargs):
        return train_tiny(bert_path, CFG, train, val, **kwargs)[1]

    whole = run()
    assert steps(whole["train_curve"]) == list(range(1, 7))
    # The loss an evaluation records is its step's.
    losses = {point["step"]: point["train_loss"] for point in whole["train_curve"]}
    assert [(h["step"], h["train_loss"]) for h in whole["history"]] == [(3, losses[3]), (6, losses[6])]

    # Checkpoints at steps 2 and 4, between and at evaluations; killed inside step 5, after its loss was
    # computed: the resumed run must neither repeat steps 3-4 nor lose step 5.
    kill_at_step(monkeypatch, 5)
    with pytest.raises(Killed):
        run(checkpoint_dir=tmp_path / "ckpt", checkpoint_every=2)
    monkeypatch.undo()
    resumed = run(checkpoint_dir=tmp_path / "ckpt", checkpoint_every=2)
    assert resumed["resumed_from_step"] == 4
    assert resumed["train_curve"] == whole["train_curve"] and resumed["history"] == whole["history"]


def tensorboard_scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return {tag: [(e.step, e.value) for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}


def test_tensorboard_gets_the_loss_of_every_step_and_each_evaluation(bert_path, tmp_path):
    pytest.importorskip("tensorboard", reason="pip install -e '.[test]' installs it")
    train, val = toy(1), toy(1).iloc[::2]
    spec = ModelSpec("tiny", bert_path)
    job = tmp_path / "job"
    _, logged = train_model(
        spec,
        dataclasses.replace(CFG, trackers=("tensorboard",)),
        train,
        val,
        0,
        checkpoint_dir=job / "checkpoint",
    )
    _, plain = train_model(spec, CFG, train, val, 0)
    # Trackers only watch: the run is the one without them.
    assert logged["train_curve"] == plain["train_curve"] and logged["history"] == plain["history"]

    # accelerate's TensorBoard tracker writes to <project dir>/<project name>.
    scalars = tensorboard_scalars(job / "trackers" / "w2s")
    # Event files hold float32: the recorded losses are float32 values.
    assert scalars["train/loss"] == [
        (p["step"], pytest.approx(p["train_loss"], rel=1e-7)) for p in plain["train_curve"]
    ]
    assert scalars["val/acc"] == [(h["step"], pytest.approx(h["val_acc"], rel=1e-7)) for h in plain["history"]]
    assert [s for s, _ in scalars["val/loss"]] == [3, 6]


@pytest.mark.parametrize("tracker, package", [("tensorboard", "tensorboard"), ("wandb", "wandb")])
def test_a_tracker_without_its_package_stops_with_the_package_to_install(tracker, package, monkeypatch, tmp_path):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=rf"train\.trackers: '{tracker}' .*pip install {package}\b"):
        make_accelerator((tracker,), tmp_path)


def test_trackers_need_the_jobs_folder(bert_path):
    cfg = dataclasses.replace(CFG, trackers=("tensorboard",))
    with pytest.raises(ValueError, match="train.trackers"):
        train_model(ModelSpec("tiny", bert_path), cfg, toy(1), None, 0)


def info(tmp_path, name: str, curve: bool = True) -> str:
    record = {
        "history": [
            {"step": 2, "train_loss": 0.6, "val_loss": 0.65, "val_acc": 0.6},
            {"step": 4, "train_loss": 0.4, "val_loss": 0.5, "val_acc": 0.8},
        ],
        "chosen_step": 4,
    }
    if curve:
        record["train_curve"] = [{"step": s, "train_loss": 0.8 - 0.1 * s} for s in range(1, 5)]
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(record))
    return str(path)


def lines_by_label(fig) -> dict[str, np.ndarray]:
    loss_axes = fig.axes[0]
    return {line.get_label(): line.get_xydata() for line in loss_axes.get_lines()}


def test_the_figure_draws_each_jobs_loss_per_step_and_marks_the_kept_evaluation(tmp_path):
    jobs = {
        "weak (tiny)": ("weak", read_curves(info(tmp_path, "weak"))),
        "ceiling (minilm)": ("ceiling", read_curves(info(tmp_path, "ceiling"))),
        "xent": ("student", read_curves(info(tmp_path, "xent"))),
        "old": ("student", read_curves(info(tmp_path, "old", curve=False))),
    }
    fig = build_figure(jobs, "sms_spam: tiny → minilm, seed 0")
    lines = lines_by_label(fig)
    assert np.allclose(lines["xent"], [[s, 0.8 - 0.1 * s] for s in range(1, 5)])
    # An info.json from before per-step losses were recorded still draws, from its evaluations, and says so.
    assert np.allclose(lines["old (loss at evaluations only)"], [[2, 0.6], [4, 0.4]])
    val_axes = fig.axes[1]
    kept = [line.get_xydata() for line in val_axes.get_lines() if line.get_marker() == "o"]
    assert len(kept) == 4 and all(np.allclose(xy, [[4, 0.8]]) for xy in kept)
    assert {t.get_text() for t in fig.legends[0].get_texts()} == {*lines, KEPT}


def test_plot_curves_writes_a_png_and_refuses_a_record_without_training(tmp_path):
    out = tmp_path / "plots" / "curves.png"
    plot_curves({"xent": ("student", info(tmp_path, "xent"))}, "title", out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps({"role": "student", "probe": "linear"}))
    with pytest.raises(ValueError, match="probe.json: no training record"):
        read_curves(probe)
    with pytest.raises(ValueError, match="unknown role"):
        build_figure({"x": ("teacher", read_curves(info(tmp_path, "x")))}, "title")


def trained_students(config: dict, weak: str = "tiny", strong: str = "minilm") -> set[str]:
    """The cells that run with (weak, strong) and train a student."""
    config = validate_config(copy.deepcopy(config))
    cells = intervention_cells(config["interventions"])
    return {
        c["intervention"]
        for c in sweep(config, cells)
        if (c["weak"], c["strong"]) == (weak, strong) and cells[c["intervention"]].trains_student
    }


def test_the_curves_rule_reads_the_weak_model_ceiling_and_every_trained_student(tmp_path):
    config = e2e_config()
    target = layout.curves_plot_path().format(task="sms_spam", seed=0, weak="tiny", strong="minilm")
    job = snakemake(tmp_path, config, "-n", target).stdout.split("rule curves:")[1].split("\n\n")[0]
    inputs = set(re.search(r"input: (.*)", job)[1].split(", "))
    students = trained_students(config)
    # The linear probes on frozen features have no training and no curve.
    assert {"xent", "s2s_it2", "bootstrap", "finetune_lp_ground_truth"} <= students
    assert not {"lp_weak", "lp_ground_truth"} & students
    run = "results/sms_spam/seed0"
    assert inputs == {f"{run}/weak/tiny/info.json", f"{run}/ceiling/minilm/info.json"} | {
        f"{run}/student/tiny/minilm/{name}/info.json" for name in students
    }


@pytest.mark.e2e
def test_every_training_job_of_the_tiny_run_keeps_its_whole_curve(e2e_run):
    config = e2e_config()
    results = e2e_run / "results" / "sms_spam"
    records = {p.parent.relative_to(results): json.loads(p.read_text()) for p in results.rglob("info.json")}
    trained = {folder: record for folder, record in records.items() if "total_steps" in record}
    for seed in config["seeds"]:
        run = Path(f"seed{seed}")
        jobs = {
            run / "weak/tiny",
            run / "weak/tiny/replica1",
            run / "ceiling/minilm",
            run / "bootstrap/tiny/bootstrap/step1",
        }
        jobs |= {run / "student/tiny/minilm" / name for name in trained_students(config)}
        assert jobs <= set(trained), sorted(map(str, jobs - set(trained)))
    for folder, record in trained.items():
        assert steps(record["train_curve"]) == list(range(1, record["total_steps"] + 1)), folder
        losses = {p["step"]: p["train_loss"] for p in record["train_curve"]}
        assert all(h["train_loss"] == losses[h["step"]] for h in record["history"]), folder
        assert np.isfinite(list(losses.values())).all(), folder
    for seed in config["seeds"]:
        plot = e2e_run / layout.curves_plot_path().format(task="sms_spam", seed=seed, weak="tiny", strong="minilm")
        assert plot.stat().st_size > 10_000
