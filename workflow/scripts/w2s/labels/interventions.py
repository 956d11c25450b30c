"""The config's intervention entries, resolved into the cells of the DAG.

An entry is a student's training recipe: a loss with its parameters, and at most one label source that
says where the student's labels come from. Without a source the student learns the weak model's labels.
A strong-to-strong entry with N iterations becomes N cells, `<name>_it1` ... `<name>_itN`, each trained
on the labels of the previous one's student, so that every iteration is reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from w2s.layout import LABELLED_SPLITS, SPLITS

# `prompt` and `fusion` are no label sources but cells without a student: the strong decoder prompted with k
# demonstrations, or its next-token logits fused with a weak expert's (dynamic logit fusion, w2s.labels.fusion).
LABEL_SOURCES = ("probe", "s2s", "bootstrap", "ensemble", "saliency", "prompt", "confident", "debate", "fusion")
# The sweep's model lists, which an entry may replace for its own cells (a prompting cell needs a decoder).
MODEL_ROLES = ("weak_models", "strong_models")
# Keys that compose with any label source, and are no loss parameter: `conflict` (cells that train a student)
# adds a second task's ground truth to the student's training set (w2s.labels.conflict); MODEL_ROLES.
COMPOSABLE = ("conflict", *MODEL_ROLES)
# Cells an s2s chain may start from: finetuned students (another s2s entry would make chains of chains).
S2S_START_KINDS = ("weak", "probe", "bootstrap", "ensemble", "confident")
# Replica r of a weak model trains on the same split as the shared weak model, from another seed.
REPLICA_SEED_STRIDE = 1000
# The defaults of w2s.labels.probes' probe functions that the split sizes bound, restated so that checking
# a config does not import scikit-learn (tests/test_probes.py checks that they agree).
PROBE_DEFAULTS = {"knn": {"k": 50}, "topo": {"k": 50}, "logreg": {"n_folds": 5}}


def iteration_name(base: str, iteration: int) -> str:
    return f"{base}_it{iteration}"


def kind_of(entry: dict[str, Any]) -> str:
    """weak, confident (its most confident weak labels), probe, s2s, bootstrap, ensemble, linear_probe (frozen
    features), finetune_probe, prompt, debate (debate-informed weak supervisors) or fusion (logit fusion)."""
    sources = [key for key in LABEL_SOURCES if key in entry]
    if len(sources) > 1:
        raise ValueError(f"an intervention takes at most one label source, got {sources}")
    if not sources:
        return "weak"
    if sources[0] == "saliency":
        return "finetune_probe" if entry["saliency"]["finetune"] else "linear_probe"
    return sources[0]


@dataclass(frozen=True)
class Intervention:
    name: str
    base: str
    entry: dict
    kind: str
    iteration: int = 0

    @property
    def loss(self) -> str:
        return self.entry.get("loss", "xent")

    @property
    def loss_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.entry.items() if k != "loss" and k not in LABEL_SOURCES + COMPOSABLE}

    @property
    def conflict(self) -> dict[str, Any] | None:
        """The conflicting objective whose ground truth the student also trains on, if any."""
        return self.entry.get("conflict")

    @property
    def previous(self) -> str | None:
        """The cell whose student relabels strong_train for this one (strong-to-strong only)."""
        if self.kind != "s2s":
            return None
        return self.entry["s2s"]["from"] if self.iteration == 1 else iteration_name(self.base, self.iteration - 1)

    @property
    def trains_student(self) -> bool:
        return self.kind not in ("linear_probe", "prompt", "fusion")

    @property
    def learns_ground_truth(self) -> bool:
        """A reference, not a W2S result: its student or probe is fit on ground truth (saliency probes), or its
        prompt shows ground-truth demonstrations."""
        if self.kind == "prompt":
            return self.entry["prompt"].get("demos") == "ground_truth"
        return (
            self.kind in ("linear_probe", "finetune_probe") and self.entry["saliency"]["probe_labels"] == "ground_truth"
        )

    def record(self) -> dict[str, Any]:
        """The cell as plain data: stored beside its outputs, and `Intervention(**record)` rebuilds it."""
        return asdict(self)


def intervention_cells(interventions: dict[str, dict]) -> dict[str, Intervention]:
    """Every intervention cell by name, strong-to-strong entries unrolled into their iterations."""
    cells: dict[str, Intervention] = {}
    for base, entry in interventions.items():
        kind = kind_of(entry)
        if kind == "s2s":
            for k in range(1, entry["s2s"].get("iterations", 1) + 1):
                cells[iteration_name(base, k)] = Intervention(iteration_name(base, k), base, entry, kind, k)
        else:
            cells[base] = Intervention(base, base, entry, kind)
    return cells


def cell_models(entry: dict[str, Any], config: dict[str, Any]) -> dict[str, list[str]]:
    """The weak and strong models an entry's cells run with: its own `weak_models` / `strong_models` where it
    gives them, else the sweep's."""
    return {role: entry.get(role) or config[role] for role in MODEL_ROLES}


def sweep_models(config: dict[str, Any]) -> dict[str, list[str]]:
    """Every weak and every strong model some cell runs with: the sweep's, then those entries add, in order."""
    out = {role: list(config[role]) for role in MODEL_ROLES}
    for entry in config["interventions"].values():
        for role, aliases in cell_models(entry, config).items():
            out[role] += [a for a in aliases if a not in out[role]]
    return out


def sweep(config: dict[str, Any], cells: dict[str, Intervention]) -> list[dict[str, Any]]:
    """Every (task, weak, strong, intervention, seed) of the config: each cell with the models its entry runs
    with (cell_models)."""
    models = sweep_models(config)
    runs_with = {name: cell_models(cell.entry, config) for name, cell in cells.items()}
    return [
        dict(task=t, weak=w, strong=s, intervention=name, seed=seed)
        for t in config["tasks"]
        for w in models["weak_models"]
        for s in models["strong_models"]
        for name in cells
        if w in runs_with[name]["weak_models"] and s in runs_with[name]["strong_models"]
        for seed in config["seeds"]
    ]


def s2s_model_problems(config: dict[str, Any]) -> list[str]:
    """Strong-to-strong entries that run with a model pair whose starting cell does not: there is no student to
    relabel with."""
    out = []
    for name, entry in config["interventions"].items():
        start = entry.get("s2s", {}).get("from")
        if start not in config["interventions"]:
            continue
        mine, theirs = cell_models(entry, config), cell_models(config["interventions"][start], config)
        for role in MODEL_ROLES:
            missing = [a for a in mine[role] if a not in theirs[role]]
            if missing:
                out.append(
                    f"config key 'interventions.{name}.{role}': {missing} run this strong-to-strong chain, but its "
                    f"starting cell {start!r} does not run with them; give both entries the same {role}"
                )
    return out


def relabellers(cells: dict[str, Intervention]) -> set[str]:
    """Cells whose students must also predict strong_train and val, for a strong-to-strong successor."""
    return {c.previous for c in cells.values() if c.previous is not None}


def ensemble_members(entry: dict[str, Any], weak: str) -> list[tuple[str, int]]:
    """(weak model alias, replica) of every supervisor averaged by an ensemble entry; replica 0 is the
    shared weak model itself, so the ensemble never retrains it."""
    spec = entry["ensemble"]
    return [(alias, r) for alias in spec.get("weak_models") or [weak] for r in range(spec.get("replicas", 1))]


def replica_seed(seed: int, replica: int) -> int:
    return seed + REPLICA_SEED_STRIDE * replica


def problems(interventions: dict[str, dict], models: dict[str, Any]) -> list[str]:
    """Cross-references between entries that the schema cannot check, as messages naming the key."""
    out = []
    for name, entry in interventions.items():
        at = f"interventions.{name}"
        sources = [s for s in LABEL_SOURCES if s in entry]
        if len(sources) > 1:
            out.append(f"config key '{at}': give at most one label source, not {sources}")
            continue
        kind = kind_of(entry)
        for role in MODEL_ROLES:
            for i, alias in enumerate(entry.get(role) or []):
                if alias not in models:
                    out.append(f"config key '{at}.{role}[{i}]': model alias {alias!r} is not defined under 'models'")
        if kind == "s2s":
            start = entry["s2s"]["from"]
            if start not in interventions:
                out.append(
                    f"config key '{at}.s2s.from': {start!r} is not an intervention "
                    f"(defined: {', '.join(interventions)})"
                )
            elif kind_of(interventions[start]) not in S2S_START_KINDS:
                out.append(
                    f"config key '{at}.s2s.from': {start!r} has no finetuned student to relabel with; "
                    "start from an intervention that finetunes on weak, confident, probe, ensemble or bootstrap labels"
                )
            clashes = [
                n
                for n in (iteration_name(name, k) for k in range(1, entry["s2s"].get("iterations", 1) + 1))
                if n in interventions
            ]
            if clashes:
                out.append(
                    f"config key '{at}': its iterations are named {clashes}, which are also intervention "
                    "names; rename one"
                )
        if kind == "bootstrap":
            for i, alias in enumerate(entry["bootstrap"]["via"]):
                if alias not in models:
                    out.append(
                        f"config key '{at}.bootstrap.via[{i}]': model alias {alias!r} is not defined under 'models'"
                    )
        if kind == "ensemble":
            spec = entry["ensemble"]
            for i, alias in enumerate(spec.get("weak_models") or []):
                if alias not in models:
                    out.append(
                        f"config key '{at}.ensemble.weak_models[{i}]': model alias {alias!r} is not "
                        "defined under 'models'"
                    )
            if len(spec.get("weak_models") or [None]) * spec.get("replicas", 1) < 2:
                out.append(
                    f"config key '{at}.ensemble': one supervisor is not an ensemble; list several "
                    "weak_models or set replicas >= 2"
                )
        trains_loss = entry.get("loss", "xent") != "xent" or Intervention(name, name, entry, kind).loss_params
        if kind == "prompt" and trains_loss:
            out.append(f"config key '{at}': a prompting cell trains no student; remove the loss and its parameters")
        if kind == "fusion" and trains_loss:
            out.append(
                f"config key '{at}': a fusion cell trains no student (it fuses the strong model's logits with an "
                "expert's); remove the loss and its parameters"
            )
        if kind == "linear_probe" and trains_loss:
            out.append(
                f"config key '{at}': a linear probe on frozen features trains no student; remove the loss "
                "and its parameters"
            )
    return out


def probe_problems(interventions: dict[str, dict], splits: dict[str, int]) -> list[str]:
    """Probe parameters that the split sizes rule out, as messages naming the key.

    A probe is fit on the weak labels of strong_train and val together (w2s.labels.probe_transform); a kNN
    or TopoFilter probe leaves each point out of its own k neighbours, and logistic regression predicts each
    of its n_folds folds from the others.
    """
    points = sum(splits[s] for s in LABELLED_SPLITS)
    out = []
    for name, entry in interventions.items():
        if "probe" not in entry:
            continue
        probe = {**PROBE_DEFAULTS[entry["probe"]["name"]], **entry["probe"]}
        at = f"interventions.{name}.probe"
        if "k" in probe and probe["k"] >= points:
            out.append(
                f"config key '{at}.k': {probe['k']} neighbours, but the probe is fit on strong_train + val = "
                f"{points} points and leaves each point out of its own neighbours; set k to at most {points - 1} "
                "or enlarge those splits"
            )
        if "n_folds" in probe and probe["n_folds"] > points:
            out.append(
                f"config key '{at}.n_folds': {probe['n_folds']} folds, but the probe is fit on strong_train + "
                f"val = {points} points; set n_folds to at most {points} or enlarge those splits"
            )
    return out


def conflict_tasks(interventions: dict[str, dict]) -> list[str]:
    """The tasks whose ground truth some entry adds to its student's training set as a conflicting objective."""
    return sorted({entry["conflict"]["task"] for entry in interventions.values() if "conflict" in entry})


def conflict_problems(config: dict[str, Any], registry: Mapping[str, Any]) -> list[str]:
    """`conflict` keys that cannot run, as messages naming the key: a cell that trains no student, an unknown
    task, a conflict task that is also one of `tasks` (every task is a cell of every entry, and that cell's
    student would learn its own task's ground truth), a task too small for the splits, or more examples than
    the conflict task's strong_train holds. `registry` maps task names to tasks (w2s.data.tasks.TASKS)."""
    splits = config["splits"]
    wanted = sum(splits[s] for s in SPLITS)
    out = []
    for name, entry in config["interventions"].items():
        if "conflict" not in entry:
            continue
        at = f"interventions.{name}.conflict"
        task, size = entry["conflict"]["task"], entry["conflict"].get("size")
        kind = kind_of(entry)
        if not Intervention(name, name, entry, kind).trains_student:
            out.append(
                f"config key '{at}': a {kind} cell trains no student, so there is no training set to add a "
                "conflicting objective to; remove conflict"
            )
        if task not in registry:
            out.append(f"config key '{at}.task': unknown task {task!r}; known tasks: {', '.join(sorted(registry))}")
            continue
        for i, primary in enumerate(config["tasks"]):
            if task == primary:
                out.append(
                    f"config key '{at}.task': {task!r} is also tasks[{i}], and the cell {name} on {task} would "
                    "train its student on that task's own ground truth (label leakage); give a task that is not in "
                    "tasks, or run this entry in a config without that task"
                )
        if wanted > registry[task].n_examples:
            out.append(
                f"config key '{at}.task': the splits of {task!r} are made with config key 'splits' "
                f"(weak_train + strong_train + val + test = {wanted}), but it has only "
                f"{registry[task].n_examples} unique examples; lower the split sizes"
            )
        if size is not None and size > splits["strong_train"]:
            out.append(
                f"config key '{at}.size': {size} examples, but the conflict rows come from {task}'s strong_train "
                f"of splits.strong_train = {splits['strong_train']} examples; lower size, raise "
                "splits.strong_train, or set size to null (all of them)"
            )
    return out


# Cells whose models read texts that no split holds (prompts, debate transcripts, conflict rows) or that run
# them as language models: a model with frozen lower blocks has states for the task's split texts only.
FROZEN_LAYERS_REFUSED = ("prompt", "debate", "fusion")


def frozen_layers_problems(config: dict[str, Any]) -> list[str]:
    """Model entries with `frozen_layers` where they cannot run: beside a generative finetune (it changes the
    lower blocks), LoRA or packing (not built for it), or in a cell of FROZEN_LAYERS_REFUSED or with a conflict."""
    frozen = {alias for alias, entry in config["models"].items() if entry.get("frozen_layers")}
    out = []
    for alias in sorted(frozen):
        entry = config["models"][alias]
        clashes = {
            "generative": "generative" in entry,
            "lora": (entry.get("lora") or {}).get("enabled"),
            "packing": entry.get("packing"),
        }
        for key in (k for k, clash in clashes.items() if clash):
            out.append(f"config key 'models.{alias}.frozen_layers': cannot be combined with {key}; remove one of them")
    for name, entry in config["interventions"].items():
        kind = kind_of(entry)
        models = cell_models(entry, config)
        used = sorted(frozen & {*models["weak_models"], *models["strong_models"]})
        if kind in FROZEN_LAYERS_REFUSED and used:
            out.append(
                f"config key 'interventions.{name}': a {kind} cell runs {used}, which have frozen_layers; give the "
                "entry its own weak_models / strong_models without frozen_layers"
            )
        strong = sorted(frozen & set(models["strong_models"]))
        if "conflict" in entry and strong:
            out.append(
                f"config key 'interventions.{name}.conflict': the conflict task's texts have no lower states of "
                f"{strong}, which have frozen_layers; give the entry strong_models without frozen_layers"
            )
    return out
