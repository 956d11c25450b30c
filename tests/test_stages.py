"""The stage functions the rule scripts call, chained on a tiny model and toy data."""

import json

import pandas as pd
import pytest

from tiny_models import tiny_bert
from w2s.execution.job import TrainingJob
from w2s.labels.interventions import intervention_cells
from w2s.stages.analysis import metrics_stage
from w2s.stages.data import splits_stage
from w2s.stages.labels import student_labels_stage
from w2s.stages.training import student_stage, weak_stage

WORDS_POS = ["good", "great"]
WORDS_NEG = ["bad", "awful"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    texts = [f"{w} movie {i}" for i in range(60) for w in (WORDS_POS[i % 2], WORDS_NEG[i % 2])]
    labels = [1, 0] * 60
    raw = root / "raw.parquet"
    pd.DataFrame({"text": texts, "label": labels}).to_parquet(raw)
    model = str(tiny_bert(root / "bert"))
    entry = {
        "lr": 3e-3,
        "head_lr": None,
        "batch_size": 8,
        "micro_batch_size": 4,
        "eval_batch_size": 32,
        "epochs": 2,
        "max_steps": None,
        "max_length": 16,
        "compile": False,
    }
    train_section = {"warmup_frac": 0.1, "weight_decay": 0.0, "evals_per_epoch": 1, "select_best_on_val": True}
    splits = {n: root / f"{n}.parquet" for n in ("weak_train", "strong_train", "val", "test")}
    return root, raw, model, entry, train_section, splits


def test_stages_chain_without_ground_truth_reaching_the_student(pipeline, monkeypatch):
    root, raw, model, entry, train_section, splits = pipeline
    monkeypatch.setattr("w2s.stages.data.load_task", lambda task, path: pd.read_parquet(path))
    splits_stage("toy", raw, {"weak_train": 30, "strong_train": 30, "val": 20, "test": 20}, 0, True, splits)
    weak_out = {n: root / f"weak_{n}.parquet" for n in ("strong_train", "val", "test")} | {"info": root / "weak.json"}
    weak_stage(TrainingJob("tiny", entry, model, train_section, 0, weak_out), splits)
    labels = {"train": root / "labels_train.parquet", "val": root / "labels_val.parquet"}
    student_labels_stage(splits["strong_train"], splits["val"], weak_out["strong_train"], weak_out["val"], labels)
    train_labels = pd.read_parquet(labels["train"])
    assert list(train_labels.columns) == ["id", "text", "soft_label"]
    weak_preds = pd.read_parquet(weak_out["strong_train"]).set_index("id")["soft_pred"]
    assert train_labels.set_index("id")["soft_label"].equals(weak_preds.loc[train_labels["id"]].rename("soft_label"))

    # A probe entry rides along in the intervention without reaching the loss.
    entry_ = {"loss": "logconf", "alpha_max": 0.5, "probe": {"name": "knn", "use": "filter"}}
    intervention = intervention_cells({"cell": entry_})["cell"].record()
    student_out = {"test": root / "student_test.parquet", "info": root / "student.json"}
    student_stage(
        TrainingJob("tiny", entry, model, train_section, 0, student_out), labels, {"test": splits["test"]}, intervention
    )
    info = json.loads(student_out["info"].read_text())
    assert info["loss"] == "logconf" and info["loss_params"] == {"alpha_max": 0.5}
    # A finished job leaves no checkpoint behind; its rerun would otherwise resume a finished training.
    assert not (root / "checkpoint").exists()

    # A retry (attempt 3, after CUDA ran out of memory, say) quarters the micro-batch, keeps the effective
    # batch, and trains to nearly the same predictions (dropout masks are drawn per micro-batch, so not
    # exactly the same).
    retry_out = {"test": root / "retry_test.parquet", "info": root / "retry" / "student.json"}
    student_stage(
        TrainingJob("tiny", entry, model, train_section, 0, retry_out, attempt=3),
        labels,
        {"test": splits["test"]},
        intervention,
    )
    retry = json.loads(retry_out["info"].read_text())["train_config"]
    assert (retry["micro_batch_size"], retry["batch_size"]) == (1, 8)
    first, again = (pd.read_parquet(o["test"])["soft_pred"] for o in (student_out, retry_out))
    assert (first - again).abs().max() < 1e-2

    out = root / "metrics.json"
    metrics_stage(splits["test"], weak_out["test"], student_out["test"], student_out["test"], {"task": "toy"}, {}, out)
    metrics = json.loads(out.read_text())["metrics"]
    assert metrics["ceiling_acc"] == metrics["student_acc"] and metrics["n_test"] == 20
