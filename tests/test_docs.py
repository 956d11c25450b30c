"""config/README.md says what the presets and the schema say: tables that drift from them mislead newcomers."""

import re

import pytest
import yaml

from tiny_workflow import ROOT
from w2s.config import load_schema
from w2s.data.tasks import TASKS

CONFIG_README = (ROOT / "config" / "README.md").read_text()


def table_row(first_cell: str) -> str:
    row = next((line for line in CONFIG_README.splitlines() if line.startswith(f"| {first_cell} |")), None)
    assert row is not None, f"config/README.md has no table row for {first_cell}"
    return row


@pytest.mark.parametrize("preset", sorted(p.name for p in (ROOT / "config").glob("*.yaml")))
def test_preset_rows_name_exactly_the_presets_tasks(preset):
    """A task named in a preset's row is one the preset runs, and every task it runs is named (tasks one
    may add are named after 'add')."""
    row = table_row(f"`{preset}`").split("add ")[0]
    named = {t for t in TASKS if re.search(rf"\b{re.escape(t)}\b", row)}
    assert named == set(yaml.safe_load((ROOT / "config" / preset).read_text())["tasks"])


def test_offline_package_row_lists_every_package_the_schema_allows():
    allowed = load_schema()["definitions"]["model"]["properties"]["offline_package"]["enum"]
    row = table_row("`offline_package`").split(" | ")[1]  # the type column
    assert set(re.findall(r"`([^`]+)`", row)) == set(allowed)
