"""Confident-label filtering (a baseline of safety-research/automated-w2s-research): the student trains only on
the fraction of strong_train whose weak labels are furthest from 1/2, on the premise that a calibrated
supervisor is wrong mostly where it is unsure."""

from __future__ import annotations

import math

import pandas as pd


def confident_rows(table: pd.DataFrame, keep: float) -> pd.DataFrame:
    """The `keep` fraction of a label table (id, text, soft_label) with soft labels furthest from 1/2, labels
    unchanged and rows in their input order.

    round(keep · n) rows are kept (halves up, at least one). Rows equally far from 1/2 are taken in the
    order of their ids, so that the cut does not depend on the order of the table's rows.
    """
    if not 0 < keep <= 1:
        raise ValueError(f"confident.keep must be a fraction in (0, 1], got {keep!r}")
    n = min(len(table), max(1, math.floor(keep * len(table) + 0.5)))
    ranked = pd.DataFrame({"distance": (table["soft_label"] - 0.5).abs(), "id": table["id"]}, index=table.index)
    chosen = ranked.sort_values(["distance", "id"], ascending=[False, True], kind="stable").index[:n]
    return table.loc[table.index.isin(chosen)].reset_index(drop=True)
