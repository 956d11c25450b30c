"""The conflict setting of weak-to-strong deception: a student trains on its cell's weak labels of the primary task
plus a second task's ground truth. The assembled training set, the config checks, the DAG and one real training."""

import json
import re

import pandas as pd
import pytest

from tiny_models import tiny_bert
from tiny_workflow import TINY_BERT, one_cell_config, snakemake
from w2s.analysis.summary import summarise
from w2s.config import ConfigError, schema_defaults, validate_config
from w2s.data.tasks import TASKS
from w2s.execution.job import TrainingJob
from w2s.labels.conflict import conflict_id, with_conflict
from w2s.labels.interventions import conflict_problems, intervention_cells
from w2s.stages.training import student_stage


def split(prefix: str, n: int) -> pd.DataFrame:
    """A split table (id, text, label) whose labels alternate 1, 0, ..."""
    ids = [f"{prefix}{i:02d}" for i in range(n)]
    return pd.DataFrame({"id": ids, "text": [f"text {i}" for i in ids], "label": [(i + 1) % 2 for i in range(n)]})


def weak_labels(table: pd.DataFrame) -> pd.DataFrame:
    """A label table of the split's texts with soft labels that are never 0 or 1, unlike ground truth."""
    return pd.DataFrame(
        {"id": table["id"], "text": table["text"], "soft_label": [0.3 + 0.01 * i for i in range(len(table))]}
    )


def rows(table: pd.DataFrame) -> set[tuple]:
    return set(table[["id", "text", "soft_label"]].itertuples(index=False, name=None))


def test_training_set_is_the_weak_rows_plus_the_first_conflict_rows_with_ground_truth_shuffled():
    primary, other = weak_labels(split("p", 10)), split("c", 8)
    train, record = with_conflict(primary, other, {"task": "tweets", "size": 5}, primary["id"], seed=0)

    first = other.iloc[:5]
    expected = {(conflict_id("tweets", i), t, float(y)) for i, t, y in first.itertuples(index=False, name=None)}
    assert rows(train) == rows(primary) | expected and len(train) == 15
    assert list(train.columns) == ["id", "text", "soft_label"]
    assert record == {"task": "tweets", "size": 5, "labels": "ground_truth", "n": 5, "skipped_shared_texts": 0}
    # Shuffled together, reproducibly from the seed; another seed orders them otherwise.
    assert train["id"].tolist() != [*primary["id"], *expected_ids(first)]
    assert train.equals(with_conflict(primary, other, {"task": "tweets", "size": 5}, primary["id"], seed=0)[0])
    other_seed = with_conflict(primary, other, {"task": "tweets", "size": 5}, primary["id"], seed=1)[0]
    assert other_seed["id"].tolist() != train["id"].tolist() and rows(other_seed) == rows(train)

    every, record = with_conflict(primary, other, {"task": "tweets", "size": None}, primary["id"], seed=0)
    assert len(every) == 18 and record["n"] == 8


def expected_ids(table: pd.DataFrame) -> list[str]:
    return [conflict_id("tweets", i) for i in table["id"]]


def test_ids_are_namespaced_so_that_two_tasks_ids_cannot_collide():
    primary = weak_labels(split("x", 4))
    # The conflict task numbers its examples as the primary one does: the same raw ids, other texts.
    other = split("x", 4).assign(text=lambda t: "other " + t["text"])
    train, _ = with_conflict(primary, other, {"task": "tweets", "size": None}, [], seed=0)
    assert train["id"].is_unique and len(train) == 8
    assert sorted(train["id"])[:4] == ["tweets:x00", "tweets:x01", "tweets:x02", "tweets:x03"]
    # A table that already holds a namespaced id is refused rather than trained with two rows under one id.
    clash = pd.concat([primary, weak_labels(pd.DataFrame({"id": ["tweets:x00"], "text": ["t"]}))], ignore_index=True)
    with pytest.raises(ValueError, match="share ids"):
        with_conflict(clash, other, {"task": "tweets", "size": None}, [], seed=0)


def test_a_conflict_text_the_student_meets_in_its_own_task_is_skipped_before_taking_the_first_n():
    primary, other = weak_labels(split("p", 6)), split("c", 6)
    # c01 and c03 are also texts of the primary task's val or test split (the same id is the same text).
    train, record = with_conflict(primary, other, {"task": "tweets", "size": 3}, [*primary["id"], "c01", "c03"], 0)
    assert sorted(train["id"][train["id"].str.startswith("tweets:")]) == ["tweets:c00", "tweets:c02", "tweets:c04"]
    assert record["skipped_shared_texts"] == 2
    with pytest.raises(ValueError, match=r"conflict\.size: 5 .* only 4"):
        with_conflict(primary, other, {"task": "tweets", "size": 5}, ["c01", "c03"], 0)


def deception_config(tasks=("sms_spam",), **interventions) -> dict:
    config = one_cell_config(TINY_BERT, {}, "xent")
    config.update(tasks=list(tasks), splits={"weak_train": 16, "strong_train": 16, "val": 8, "test": 8})
    config["interventions"].update(interventions)
    return config


def test_conflict_is_no_label_source_and_no_loss_parameter():
    entry = {"loss": "logconf", "alpha_max": 0.5, "bootstrap": {"via": ["m"]}, "conflict": {"task": "tweets"}}
    cell = intervention_cells(validate_config(deception_config(boot=entry))["interventions"])["boot"]
    assert cell.kind == "bootstrap" and cell.loss_params == {"alpha_max": 0.5}
    assert cell.conflict == {"size": None, "task": "tweets"} and not cell.learns_ground_truth


@pytest.mark.parametrize(
    "tasks, entry, expected",
    [
        (["sms_spam"], {"conflict": {"task": "mnist"}}, r"'interventions\.c\.conflict\.task': unknown task 'mnist'"),
        # Every task of `tasks` is a cell of the entry: the second one would learn its own ground truth.
        (["sms_spam", "tweets"], {"conflict": {"task": "tweets"}}, r"'interventions\.c\.conflict\.task'.*tasks\[1\]"),
        (
            ["sms_spam"],
            {"prompt": {"shots": 0}, "conflict": {"task": "tweets"}},
            r"'interventions\.c\.conflict': a prompt cell trains no student",
        ),
        (
            ["sms_spam"],
            {"saliency": {"finetune": False, "probe_labels": "weak"}, "conflict": {"task": "tweets"}},
            r"'interventions\.c\.conflict': a linear_probe cell trains no student",
        ),
        (["sms_spam"], {"conflict": {"task": "tweets", "size": 17}}, r"'interventions\.c\.conflict\.size': 17 ex"),
    ],
)
def test_config_checks_name_the_conflict_key(tasks, entry, expected):
    config = validate_config(deception_config(tasks, c=entry))
    problems = conflict_problems(config, TASKS)
    assert len(problems) == 1 and re.search(expected, problems[0]), problems


def test_a_conflict_task_too_small_for_the_splits_is_refused_before_its_splits_job_fails():
    # bbc_news has 2,127 unique articles; imdb, the primary task, holds the 3,000 examples of these splits.
    config = deception_config(("imdb",), c={"conflict": {"task": "bbc_news"}})
    config["splits"] = {"weak_train": 1000, "strong_train": 1000, "val": 500, "test": 500}
    problems = conflict_problems(validate_config(config), TASKS)
    assert len(problems) == 1 and re.search(r"'interventions\.c\.conflict\.task'.*= 3000.*only 2127", problems[0])


def test_a_finetuned_saliency_probe_and_a_strong_to_strong_chain_may_have_a_conflict():
    entries = {
        "ft": {"saliency": {"finetune": True, "probe_labels": "weak"}, "conflict": {"task": "tweets"}},
        "s2s": {"s2s": {"from": "xent"}, "conflict": {"task": "tweets", "size": 16}},
    }
    assert conflict_problems(validate_config(deception_config(**entries)), TASKS) == []


def test_schema_requires_the_conflict_task_and_takes_nothing_else():
    with pytest.raises(ConfigError, match=r"'interventions\.c\.conflict'.*'task' is a required property"):
        validate_config(deception_config(c={"conflict": {"size": 3}}))
    with pytest.raises(ConfigError, match=r"'interventions\.c\.conflict'.*allowed keys: size, task"):
        validate_config(deception_config(c={"conflict": {"task": "tweets", "weight": 2}}))


def planned_jobs(stdout: str) -> list[dict]:
    """Each job of a dry run as its rule, input and wildcards lines."""
    jobs = []
    for block in stdout.split("\nrule ")[1:]:
        fields = dict(re.findall(r"^\s+(input|wildcards): (.*)$", block, re.MULTILINE))
        jobs.append({"rule": block.split(":")[0], **fields})
    return jobs


def test_dag_makes_the_conflict_tasks_splits_and_the_conflict_student_depends_on_them(tmp_path):
    config = deception_config(conflict_xent={"conflict": {"task": "tweets", "size": 8}})
    config["seeds"] = [0, 1]
    jobs = planned_jobs(snakemake(tmp_path, config, "-n").stdout)
    splits = sorted(j["wildcards"] for j in jobs if j["rule"] == "splits")
    assert splits == [f"task={t}, seed={s}" for t in ("sms_spam", "tweets") for s in (0, 1)]
    # Only the conflict task's data and splits: no weak model, ceiling or cell of its own.
    tweets_jobs = {j["rule"] for j in jobs if "task=tweets" in j.get("wildcards", "")}
    assert tweets_jobs == {"materialize_dataset", "splits"}
    students = {j["wildcards"]: j["input"] for j in jobs if j["rule"] == "train_student"}
    for seed in (0, 1):
        conflict = f"results/tweets/seed{seed}/splits/strong_train.parquet"
        student = f"task=sms_spam, seed={seed}, weak=m, strong=m, intervention="
        assert conflict in students[student + "conflict_xent"].split(", ")
        assert "results/tweets/" not in students[student + "xent"]


def test_a_conflict_on_one_of_the_configs_tasks_stops_before_any_job(tmp_path):
    config = deception_config(("sms_spam", "tweets"), conflict_xent={"conflict": {"task": "tweets"}})
    proc = snakemake(tmp_path, config, "-n", check=False)
    assert proc.returncode != 0
    assert "'interventions.conflict_xent.conflict.task': 'tweets' is also tasks[1]" in proc.stdout + proc.stderr


def test_summary_says_which_cells_had_a_conflict(tmp_path):
    cells = intervention_cells(
        validate_config(deception_config(conflict_xent={"conflict": {"task": "tweets"}}))["interventions"]
    )
    metrics = {
        k: 0.7 for k in ("weak_acc", "weak_auroc", "ceiling_acc", "ceiling_auroc", "student_acc", "student_auroc")
    }
    paths = []
    for name, cell in cells.items():
        key = {"task": "sms_spam", "weak": "m", "strong": "m", "intervention": name, "seed": 0}
        paths.append(tmp_path / f"{name}.json")
        record = {"cell": key, "config": {"intervention": cell.record()}, "metrics": {"n_test": 8, **metrics}}
        paths[-1].write_text(json.dumps(record))
    summary = summarise(paths, 0.01).set_index("intervention")
    assert summary.loc["conflict_xent", "conflict"] == "tweets" and summary.loc["xent", "conflict"] == ""
    assert not summary["reference"].any()


def test_a_conflict_student_trains_on_its_weak_rows_and_the_conflict_rows_and_selects_on_weak_val(tmp_path):
    model = str(tiny_bert(tmp_path / "bert"))
    defaults, train_section = schema_defaults()
    entry = {**defaults, "lr": 1e-3, "batch_size": 8, "micro_batch_size": 8, "epochs": 1, "max_length": 16}
    tables = {"train": weak_labels(split("p", 24)), "val": weak_labels(split("v", 8))}
    labels = {name: tmp_path / f"{name}.parquet" for name in tables}
    for name, table in tables.items():
        table.to_parquet(labels[name])
    test, conflict = tmp_path / "test.parquet", tmp_path / "conflict.parquet"
    split("t", 8).to_parquet(test)
    split("c", 20).to_parquet(conflict)

    infos = {}
    for name, entry_ in (("xent", {}), ("conflict_xent", {"conflict": {"task": "tweets", "size": 16}})):
        cell = intervention_cells({name: entry_})[name].record()
        out = {"test": tmp_path / name / "test.parquet", "info": tmp_path / name / "info.json"}
        job = TrainingJob("tiny", entry, model, train_section, 0, out)
        student_stage(job, labels, {"test": test}, cell, conflict_split=conflict if entry_ else None)
        infos[name] = json.loads(out["info"].read_text())
        assert len(pd.read_parquet(out["test"])) == 8

    plain, with_conflict_ = infos["xent"], infos["conflict_xent"]
    assert (plain["n_train"], with_conflict_["n_train"]) == (24, 40)
    # The training loop ran over the larger set: 40 rows in batches of 8 are 5 optimiser steps, 24 are 3.
    assert (len(plain["train_curve"]), len(with_conflict_["train_curve"])) == (3, 5)
    # Validation stays the primary task's weak labels alone.
    assert plain["n_val"] == with_conflict_["n_val"] == 8
    assert with_conflict_["train_labels"] == {
        "primary": {"source": "weak", "n": 24},
        "conflict": {"task": "tweets", "size": 16, "labels": "ground_truth", "n": 16, "skipped_shared_texts": 0},
    }
    assert plain["train_labels"] == {"primary": {"source": "weak", "n": 24}, "conflict": None}
