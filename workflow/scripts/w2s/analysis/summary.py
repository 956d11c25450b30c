"""Collect per-cell metric files into one tidy table: one row per cell and seed."""

from __future__ import annotations

import glob
import json
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from w2s.analysis.imitation import RATES, SIZES
from w2s.analysis.pgr import check_min_gap, gated_pgr
from w2s.labels.interventions import Intervention
from w2s.layout import glob_pattern, metrics_path

KEY_COLUMNS = ["task", "weak", "strong", "intervention", "seed"]
# True where the cell's student or probe learned ground truth labels: a reference, not a W2S result.
REFERENCE_COLUMN = "reference"
# The task whose ground truth the cell's student also trained on, as a conflicting objective; empty for none.
CONFLICT_COLUMN = "conflict"
METRIC_COLUMNS = [
    "n_test",
    "weak_acc",
    "weak_auroc",
    "ceiling_acc",
    "ceiling_auroc",
    "student_acc",
    "student_auroc",
    "pgr_acc",
    "pgr_auroc",
]
# Why a seed's PGR is undefined (its ceiling not above its weak model by the margin); empty where defined.
PGR_REASON_COLUMNS = ["pgr_acc_undefined", "pgr_auroc_undefined"]

# Parameter counts (millions) from the config's model entries; empty where the config gives none.
SIZE_COLUMNS = ["weak_size", "strong_size"]
# Probe interventions only; empty for the others.
PROBE_COLUMNS = [
    "probe_acc_vs_gt",
    "probe_auroc_vs_gt",
    "probe_acc_vs_weak",
    "probe_auroc_vs_weak",
    "dropped_frac_train",
    "dropped_frac_val",
]
# Imitation and deception rates with the sizes of their subsets (w2s.analysis.imitation); empty for
# metric files written before they were recorded.
IMITATION_COLUMNS = list(RATES) + SIZES


def learns_ground_truth(record: dict) -> bool:
    """Whether the cell a metric file records is a reference; a file without its intervention's record
    (written by hand, or before cells were recorded) counts as a W2S cell."""
    cell = record["config"].get("intervention")
    return bool(cell) and Intervention(**cell).learns_ground_truth


def conflict_task(record: dict) -> str:
    """The conflict task of the cell a metric file records; none for a file without its intervention's record."""
    cell = record["config"].get("intervention")
    conflict = Intervention(**cell).conflict if cell else None
    return conflict["task"] if conflict else ""


def summarise(metric_files: Iterable[str | Path], pgr_min_gap: float) -> pd.DataFrame:
    """One row per metric file; PGR from its scores, undefined (with the reason) where ceiling - weak is
    not above `pgr_min_gap`."""
    pgr_min_gap = check_min_gap(pgr_min_gap)
    rows = []
    for path in metric_files:
        record = json.loads(Path(path).read_text())
        metrics = record["metrics"]
        probe = record.get("probe", {})
        imitation = record.get("imitation", {})
        pgrs = {
            m: gated_pgr(metrics[f"student_{m}"], metrics[f"weak_{m}"], metrics[f"ceiling_{m}"], pgr_min_gap)
            for m in ("acc", "auroc")
        }
        rows.append(
            {
                **{k: record["cell"][k] for k in KEY_COLUMNS},
                REFERENCE_COLUMN: learns_ground_truth(record),
                CONFLICT_COLUMN: conflict_task(record),
                # PGR is recomputed from the scores, with the margin, whatever the file holds.
                **{k: metrics[k] for k in METRIC_COLUMNS if not k.startswith("pgr_")},
                **{f"pgr_{m}": value for m, (value, _) in pgrs.items()},
                **{f"pgr_{m}_undefined": reason for m, (_, reason) in pgrs.items()},
                **{
                    f"{role}_size": record["config"].get(f"{role}_model", {}).get("size", float("nan"))
                    for role in ("weak", "strong")
                },
                **{k: probe.get(k, float("nan")) for k in PROBE_COLUMNS},
                **{k: imitation.get(k, float("nan")) for k in IMITATION_COLUMNS},
            }
        )
    columns = KEY_COLUMNS + [REFERENCE_COLUMN, CONFLICT_COLUMN] + METRIC_COLUMNS + PGR_REASON_COLUMNS + SIZE_COLUMNS
    df = pd.DataFrame(rows, columns=columns + PROBE_COLUMNS + IMITATION_COLUMNS)
    return df.sort_values(KEY_COLUMNS).reset_index(drop=True)


def finished_metric_files(results_dir: str | Path) -> list[Path]:
    """Metric files of every cell that has finished so far (they are written atomically, so present = done)."""
    return sorted(Path(p) for p in glob.glob(glob_pattern(metrics_path(glob.escape(str(results_dir))))))
