"""Training curves: the loss of every optimizer step and the validation metrics of every evaluation that each
training job records in its info.json, drawn for one task, model pair and seed (the weak supervisor, the
strong ceiling and each intervention's student) beside each other.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from w2s.analysis.plots import CEILING_COLOR, WEAK_COLOR, cell_colors
from w2s.atomic import atomic_path

ROLES = ("weak", "ceiling", "student")
KEPT = "weights kept (best validation)"
STYLES = {"weak": {"color": WEAK_COLOR, "linestyle": "--"}, "ceiling": {"color": CEILING_COLOR, "linestyle": "-"}}


@dataclass(frozen=True)
class Curves:
    """One training job's record: `loss` (step, train_loss) at every optimizer step, `evals` (step, val_loss,
    val_acc) at every evaluation, and the step whose weights it kept."""

    loss: pd.DataFrame
    evals: pd.DataFrame
    chosen_step: int
    # False for an info.json written before per-step losses were recorded: `loss` then holds the loss at
    # each evaluation only.
    every_step: bool


def read_curves(info_path: str | os.PathLike) -> Curves:
    info = json.loads(Path(info_path).read_text())
    missing = [key for key in ("history", "chosen_step") if key not in info]
    if missing:
        raise ValueError(f"{info_path}: no training record ({', '.join(missing)} missing); is it a training job's?")
    evals = pd.DataFrame(info["history"], columns=["step", "train_loss", "val_loss", "val_acc"])
    every_step = "train_curve" in info
    loss = pd.DataFrame(info["train_curve"], columns=["step", "train_loss"]) if every_step else evals
    return Curves(loss[["step", "train_loss"]], evals[["step", "val_loss", "val_acc"]], info["chosen_step"], every_step)


def build_figure(jobs: dict[str, tuple[str, Curves]], title: str) -> Figure:
    """Training loss and validation accuracy against the optimizer step, one line per job; `jobs` maps a
    legend label to (role: weak, ceiling or student; its curves). A dot marks the evaluation whose weights
    each job kept."""
    unknown = {role for role, _ in jobs.values()} - set(ROLES)
    if unknown:
        raise ValueError(f"unknown role(s) {sorted(unknown)}; roles are {ROLES}")
    students = [label for label, (role, _) in jobs.items() if role == "student"]
    colors = cell_colors(students)
    fig = Figure(figsize=(12, 4.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_val = fig.subplots(1, 2)
    for label, (role, curves) in jobs.items():
        style = STYLES.get(role) or {"color": colors[label], "linestyle": "-"}
        name = label if curves.every_step else f"{label} (loss at evaluations only)"
        ax_loss.plot(curves.loss["step"], curves.loss["train_loss"], linewidth=1.2, label=name, **style)
        ax_val.plot(curves.evals["step"], curves.evals["val_acc"], marker=".", linewidth=1.2, **style)
        kept = curves.evals[curves.evals["step"] == curves.chosen_step]
        ax_val.plot(kept["step"], kept["val_acc"], "o", markersize=7, color=style["color"])
    ax_loss.set(xlabel="optimizer step", ylabel="training loss (each job's own loss)", title="training loss")
    ax_val.set(
        xlabel="optimizer step",
        ylabel="validation accuracy on the job's own labels",
        title="validation (ground truth for weak and ceiling, the cell's labels for students)",
    )
    ax_val.title.set_fontsize(9)
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
    handles = [*ax_loss.get_lines(), Line2D([], [], color="0.3", marker="o", linestyle="none", label=KEPT)]
    fig.legend(handles=handles, loc="outside right center", fontsize=8, frameon=False)
    fig.suptitle(title)
    return fig


def plot_curves(jobs: dict[str, tuple[str, str | os.PathLike]], title: str, png_path: str | os.PathLike) -> None:
    """Draw the curves of the jobs whose info.json files `jobs` names ({label: (role, path)}) to `png_path`."""
    fig = build_figure({label: (role, read_curves(path)) for label, (role, path) in jobs.items()}, title)
    with atomic_path(png_path) as tmp:
        # The temporary name ends in .part, so the format must be named.
        fig.savefig(tmp, format="png", dpi=120)
