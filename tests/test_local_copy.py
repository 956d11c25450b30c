"""A hub task read from a local copy (task_options.<task>.local_copy), for compute nodes without internet:
both copy formats, the early errors, and the workflow using the copy as the splits job's input."""

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import datasets
import pandas as pd
import pytest
import yaml

from tiny_workflow import ROOT, snakemake
from w2s import layout
from w2s.data.splits import normalise_text
from w2s.data.tasks import TASKS, TaskDataError, load_task
from w2s.data.tasks.hub import load_hub_frame, record_hash, record_rng
from w2s.data.tasks.options import task_option_problems
from w2s.data.tasks.question_answering import format_boolq

FIXTURES = Path(__file__).parent / "fixtures" / "hub"
BOOLQ = [json.loads(line) for line in (FIXTURES / "boolq.jsonl").read_text().splitlines()]
# A labelled train split, a labelled validation split, and a test split whose labels are hidden.
SPLIT_RECORDS = {"train": BOOLQ[:2], "validation": BOOLQ[2:], "test": [dict(BOOLQ[0], answer=None)]}


@pytest.fixture
def no_hub(monkeypatch):
    """Any attempt to reach the hub fails the test."""
    real = datasets.load_dataset

    def load_dataset(path, *args, **kwargs):
        assert path == "parquet", f"tried to load {path!r} from the hub"
        return real(path, *args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)


def save_to_disk_copy(folder: Path, split_records: dict = SPLIT_RECORDS) -> Path:
    datasets.DatasetDict({s: datasets.Dataset.from_list(r) for s, r in split_records.items()}).save_to_disk(folder)
    return folder


def parquet_copy(folder: Path) -> Path:
    # The hub snapshot's naming for train, the Parquet conversion's for validation, a plain name for test.
    paths = {
        "train": folder / "data" / "train-00000-of-00001.parquet",
        "validation": folder / "validation" / "0000.parquet",
        "test": folder / "test.parquet",
    }
    for split, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(SPLIT_RECORDS[split]).to_parquet(path)
    return folder


def expected_boolq() -> list[dict]:
    return [format_boolq(r, record_rng(r)) for r in BOOLQ]


@pytest.mark.parametrize("make_copy", [save_to_disk_copy, parquet_copy])
def test_load_task_reads_the_labelled_splits_of_a_local_copy(tmp_path, no_hub, make_copy):
    df = load_task("boolq", make_copy(tmp_path / "boolq"))
    assert df.to_dict("records") == expected_boolq()


def test_a_missing_local_copy_names_the_config_key(tmp_path):
    with pytest.raises(TaskDataError, match=r"'task_options\.boolq\.local_copy'.*is not an existing folder"):
        load_task("boolq", tmp_path / "nowhere")


@pytest.mark.parametrize("make_copy", [save_to_disk_copy, parquet_copy])
def test_a_local_copy_without_a_pooled_split_names_it(tmp_path, make_copy, monkeypatch):
    monkeypatch.setitem(SPLIT_RECORDS, "validation", [])
    folder = tmp_path / "boolq"
    if make_copy is save_to_disk_copy:
        splits = {s: datasets.Dataset.from_list(r) for s, r in SPLIT_RECORDS.items() if s != "validation"}
        datasets.DatasetDict(splits).save_to_disk(folder)
    else:
        parquet_copy(folder)
        (folder / "validation" / "0000.parquet").unlink()
    with pytest.raises(TaskDataError, match=r"lacks split\(s\) \['validation'\]"):
        load_task("boolq", folder)


def test_rating_range_keeps_the_puzzles_rated_within_it(tmp_path, no_hub):
    puzzles = [json.loads(line) for line in (FIXTURES / "chess_puzzles.jsonl").read_text().splitlines()]
    folder = tmp_path / "chess"
    folder.mkdir()
    pd.DataFrame(puzzles).to_parquet(folder / "train.parquet")
    ratings = [p["Rating"] for p in puzzles]  # 1760, 2671, 998
    assert len(load_task("chess_puzzles", folder)) == 3
    kept = load_task("chess_puzzles", folder, rating_range=(998, 1760))
    assert len(kept) == sum(998 <= r <= 1760 for r in ratings) == 2
    with pytest.raises(TaskDataError, match="rating_range applies to chess puzzles only"):
        load_task("boolq", save_to_disk_copy(tmp_path / "boolq"), rating_range=(0, 1))


def test_a_capped_pool_keeps_the_records_of_lowest_content_hash_whatever_their_order(tmp_path, no_hub):
    source = replace(TASKS["boolq"].source, splits=("train",), pool_size=2)
    lowest = sorted(BOOLQ, key=record_hash)[:2]
    expected = sorted(format_boolq(r, record_rng(r))["text"] for r in lowest)
    for order in (1, -1):
        folder = save_to_disk_copy(tmp_path / f"boolq{order}", {"train": BOOLQ[::order]})
        assert sorted(load_hub_frame("boolq", source, folder)["text"]) == expected


def test_task_option_problems_name_the_key_and_the_fix(tmp_path):
    copy = str(save_to_disk_copy(tmp_path / "boolq"))
    tasks = ["boolq", "sms_spam", "chess_puzzles"]

    def problems(options):
        return task_option_problems(options, tasks, TASKS)

    assert problems({"boolq": {"local_copy": copy}, "chess_puzzles": {"rating_range": [1000, 2000]}}) == []
    assert problems({"sciq": {"local_copy": copy}}) == [
        "config key 'task_options.sciq': 'sciq' is not one of the config's tasks (boolq, sms_spam, chess_puzzles); "
        "remove it"
    ]
    (message,) = problems({"boolq": {"local_copy": str(tmp_path / "missing")}})
    assert "'task_options.boolq.local_copy'" in message and "not an existing folder" in message
    (message,) = problems({"sms_spam": {"local_copy": copy}})
    assert "'task_options.sms_spam.local_copy'" in message and "offline task" in message
    (message,) = problems({"boolq": {"rating_range": [0, 10]}})
    assert "'task_options.boolq.rating_range'" in message and "only chess_puzzles" in message
    (message,) = problems({"chess_puzzles": {"rating_range": [2000, 1000]}})
    assert "'task_options.chess_puzzles.rating_range'" in message and "[2000, 1000] is empty" in message


# --- the workflow ----------------------------------------------------------------------------------


def local_copy_config(copy: Path) -> dict:
    config = yaml.safe_load((ROOT / "config" / "burns-gpt2.yaml").read_text())
    config.update(
        tasks=["boolq"],
        seeds=[0],
        strong_models=["gpt2-medium"],
        interventions={"xent": {"loss": "xent"}},
        splits={"weak_train": 1, "strong_train": 1, "val": 1, "test": 1, "balance": False},
        task_options={"boolq": {"local_copy": str(copy)}},
    )
    return config


def test_workflow_splits_a_local_copy_and_reruns_when_it_changes(tmp_path):
    copy = save_to_disk_copy(tmp_path / "boolq-copy")
    workdir = tmp_path / "run"
    workdir.mkdir()
    config = local_copy_config(copy)

    plan = snakemake(workdir, config, "-n", layout.split_path("test").format(task="boolq", seed=0)).stdout
    job = plan.split("rule splits:")[1].split("\n\n")[0]
    # The copy's files are the job's inputs.
    assert str(copy / "dataset_dict.json") in job and str(copy / "train") in job

    splits = {s: workdir / p.format(task="boolq", seed=0) for s, p in layout.split_paths().items()}
    target = layout.split_path("test").format(task="boolq", seed=0)
    snakemake(workdir, config, "--cores", "1", target)
    texts = pd.concat([pd.read_parquet(p) for p in splits.values()])["text"]
    assert sorted(texts) == sorted(normalise_text(r["text"]) for r in expected_boolq())

    # A copy saved anew with other rows makes the splits stale (Snakemake compares the files' contents).
    train = BOOLQ[:2] + [dict(BOOLQ[0], question="is the sun a planet", answer=False)]
    shutil.rmtree(copy)
    save_to_disk_copy(copy, {**SPLIT_RECORDS, "train": train})
    rerun = snakemake(workdir, config, "-n", target).stdout
    assert re.search(r"^splits\s+1$", rerun, re.MULTILINE)
    # Only the copy changed, not the params: this is the copy being an input.
    assert (
        snakemake(workdir, config, "-n", target, "--rerun-triggers", "input", "mtime").stdout.count("rule splits") == 1
    )


def test_workflow_stops_before_any_job_when_the_local_copy_is_missing(tmp_path):
    proc = snakemake(tmp_path, local_copy_config(tmp_path / "missing"), "-n", check=False)
    assert proc.returncode != 0
    assert "'task_options.boolq.local_copy'" in proc.stdout + proc.stderr
