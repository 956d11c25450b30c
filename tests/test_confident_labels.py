"""Confident-label filtering: the student trains on the fraction of strong_train whose weak labels are furthest
from 1/2. The selection, its config entry, its stage and its place in the DAG."""

import re

import numpy as np
import pandas as pd
import pytest
import yaml

from tiny_workflow import ROOT, one_cell_config, snakemake
from w2s.config import ConfigError, validate_config
from w2s.labels.confident import confident_rows
from w2s.labels.interventions import intervention_cells, problems
from w2s.stages.labels import confident_labels_stage


def label_table(labels, ids=None) -> pd.DataFrame:
    ids = ids or [f"e{i}" for i in range(len(labels))]
    return pd.DataFrame({"id": ids, "text": [f"text of {i}" for i in ids], "soft_label": labels})


def test_keeps_the_rows_furthest_from_one_half_with_their_weak_labels_in_input_order():
    table = label_table([0.55, 0.05, 0.62, 0.97, 0.4, 0.2, 0.5, 0.81])
    kept = confident_rows(table, 0.5)
    # Distances from 1/2: .05 .45 .12 .47 .1 .3 0 .31; the four largest are e1, e3, e5, e7.
    assert kept["id"].tolist() == ["e1", "e3", "e5", "e7"]
    assert kept.equals(table.iloc[[1, 3, 5, 7]].reset_index(drop=True))  # texts and weak labels unchanged
    dropped = table[~table["id"].isin(kept["id"])]
    assert (kept["soft_label"] - 0.5).abs().min() > (dropped["soft_label"] - 0.5).abs().max()


@pytest.mark.parametrize(
    "n, keep, expected",
    [(10, 0.31, 3), (100, 0.07, 7), (10, 0.35, 4), (5, 0.5, 3), (128, 0.5, 64), (7, 1.0, 7), (10, 0.01, 1)],
)
def test_keeps_keep_times_n_rows_rounded_halves_up_and_at_least_one(n, keep, expected):
    # 0.07 * 100 is 7.000000000000001 in floating point: a ceiling would keep 8.
    table = label_table(list(np.linspace(0.01, 0.99, n)))
    assert len(confident_rows(table, keep)) == expected


def test_ties_at_the_cut_go_to_the_smaller_id_whatever_the_row_order():
    # 0.25 and 0.75 are exactly as far from 1/2; one of the three such rows makes the cut.
    table = label_table([0.75, 0.9, 0.25, 0.6, 0.75], ids=["c", "a", "b", "e", "d"])
    kept = confident_rows(table, 0.4)
    assert kept["id"].tolist() == ["a", "b"]
    shuffled = table.iloc[[3, 4, 0, 2, 1]]
    assert sorted(confident_rows(shuffled, 0.4)["id"]) == ["a", "b"]


@pytest.mark.parametrize("keep", [0, -0.2, 1.5])
def test_keep_outside_zero_to_one_is_rejected(keep):
    with pytest.raises(ValueError, match="confident.keep"):
        confident_rows(label_table([0.2, 0.8]), keep)


@pytest.mark.parametrize("keep", [0, 1.01, 2])
def test_a_keep_outside_the_unit_interval_is_a_config_error_naming_the_field(tmp_path, keep):
    with pytest.raises(ConfigError, match=r"'interventions\.conf\.confident\.keep'"):
        validate_config(one_cell_config(tmp_path, {"confident": {"keep": keep}}, "conf"))


def test_keep_is_required_and_nothing_else_is_taken(tmp_path):
    with pytest.raises(ConfigError, match=r"'interventions\.conf\.confident'.*'keep' is a required property"):
        validate_config(one_cell_config(tmp_path, {"confident": {}}, "conf"))
    with pytest.raises(ConfigError, match=r"'interventions\.conf\.confident'.*allowed keys: keep"):
        validate_config(one_cell_config(tmp_path, {"confident": {"keep": 0.5, "threshold": 0.7}}, "conf"))


def test_the_entry_is_a_confident_cell_that_takes_a_loss_and_can_start_a_strong_to_strong_chain(tmp_path):
    entry = {"loss": "logconf", "alpha_max": 0.75, "confident": {"keep": 1}}
    config = validate_config(one_cell_config(tmp_path, entry, "conf"))
    cell = intervention_cells(config["interventions"])["conf"]
    assert cell.kind == "confident" and cell.trains_student
    assert cell.loss == "logconf" and cell.loss_params == {"alpha_max": 0.75}
    chain = {"conf": {"confident": {"keep": 0.5}}, "s2s": {"s2s": {"from": "conf"}}}
    assert problems(chain, {}) == []
    both = {"two": {"confident": {"keep": 0.5}, "probe": {"name": "knn", "use": "filter"}}}
    assert "at most one label source" in problems(both, {})[0]


def test_stage_filters_strong_train_keeps_val_whole_and_writes_no_ground_truth(tmp_path):
    def split(ids):
        return pd.DataFrame({"id": ids, "text": [f"t {i}" for i in ids], "label": [i % 2 for i in range(len(ids))]})

    def preds(ids, p):
        # In another row order than the split, as a model's predictions may come.
        return pd.DataFrame({"id": ids, "soft_pred": p}).iloc[::-1]

    train_ids, val_ids = [f"s{i}" for i in range(6)], ["v0", "v1", "v2"]
    paths = {name: tmp_path / f"{name}.parquet" for name in ("st", "val", "wst", "wval")}
    split(train_ids).to_parquet(paths["st"])
    split(val_ids).to_parquet(paths["val"])
    preds(train_ids, [0.45, 0.9, 0.25, 0.52, 0.05, 0.7]).to_parquet(paths["wst"])
    preds(val_ids, [0.5, 0.6, 0.4]).to_parquet(paths["wval"])
    outputs = {"train": tmp_path / "out" / "train.parquet", "val": tmp_path / "out" / "val.parquet"}
    confident_labels_stage(paths["st"], paths["val"], paths["wst"], paths["wval"], 0.5, outputs)

    train, val = pd.read_parquet(outputs["train"]), pd.read_parquet(outputs["val"])
    assert list(train.columns) == list(val.columns) == ["id", "text", "soft_label"]
    assert train["id"].tolist() == ["s1", "s2", "s4"] and train["soft_label"].tolist() == [0.9, 0.25, 0.05]
    assert val["id"].tolist() == val_ids and val["soft_label"].tolist() == [0.5, 0.6, 0.4]


def test_dag_makes_the_confident_labels_once_per_cell_and_trains_a_student_on_them(tmp_path):
    config = yaml.safe_load((ROOT / "config" / "burns-gpt2.yaml").read_text())
    config.update(
        tasks=["sciq"],
        seeds=[0, 1],
        strong_models=["gpt2-medium"],
        interventions={"xent": {"loss": "xent"}, "confident": {"confident": {"keep": 0.5}}},
    )
    stats = snakemake(tmp_path, config, "-n", "--quiet", "rules").stdout.split("Job stats:")[1]
    counts = {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.MULTILINE)}
    # One table per seed for each cell; the confident cell needs no activations.
    assert counts["confident_labels"] == 2 and counts["student_labels"] == 2
    assert counts["train_student"] == 4 and "probe_labels" not in counts and "activations" not in counts
