"""config/README.md says what the presets and the schema say: tables that drift from them mislead newcomers."""

import re
import shlex

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


# Options that take every following word as a value: a target written after one is read as a value
# (`--resources gpu=1 plots` fails with "dictionary update sequence element #1 has length 1").
KEY_VALUE_OPTIONS = {"--config", "-C", "--resources", "--res", "--set-resources", "--default-resources"}
FILE_OPTIONS = {"--configfile", "--configfiles"}
DOCUMENTED_COMMANDS = ("README.md", "*/README.md", "docs/*.md", "config/*.yaml", "profiles/*/*.yaml", "Snakefile")


def documented_snakemake_commands() -> list[tuple[str, str]]:
    """(file, command) for every snakemake command line the docs, presets and profiles show."""
    commands = []
    for pattern in DOCUMENTED_COMMANDS:
        for path in sorted(ROOT.glob(pattern)):
            # Join continued lines, dropping a comment marker that continues a command in a YAML comment.
            text = re.sub(r"\\\n\s*#?\s*", " ", path.read_text())
            for found in re.finditer(r"(?:^|`|#\s+)(snakemake [^`\n]*)", text, re.MULTILINE):
                command = re.split(r"\s#\s|\s{2,}[(#]", found[1])[0]
                commands.append((str(path.relative_to(ROOT)), command))
    return commands


def misplaced_words(command: str) -> list[str]:
    """The words that an option taking many values would swallow, though they are no value of it."""
    bad, option = [], None
    for word in shlex.split(command.replace("[", " ").replace("]", " ")):
        if word.startswith("-"):
            option = word if word in KEY_VALUE_OPTIONS | FILE_OPTIONS else None
        elif option in KEY_VALUE_OPTIONS and "=" not in word:
            bad.append(word)
        elif option in FILE_OPTIONS and not word.endswith((".yaml", ".yml", ".json")):
            bad.append(word)
    return bad


def test_docs_show_snakemake_commands_and_they_put_targets_before_many_valued_options():
    commands = documented_snakemake_commands()
    assert any("--resources gpu=" in c for _, c in commands) and any("--config " in c for _, c in commands)
    wrong = [(path, command) for path, command in commands if misplaced_words(command)]
    assert not wrong, f"targets after --resources/--config/--configfile are read as their values: {wrong}"


def test_a_target_after_resources_is_caught():
    assert misplaced_words("snakemake --cores 2 --resources gpu=1 plots") == ["plots"]
    assert misplaced_words("snakemake --configfile my.yaml plots") == ["plots"]
    assert misplaced_words("snakemake --cores 1 plots --config 'seeds=[0]'") == []
