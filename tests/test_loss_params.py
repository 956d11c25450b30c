"""Each loss's PARAMS is the one definition of its config parameters; the schema and config/README.md
restate them, and these tests fail where a restatement disagrees."""

import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from tiny_workflow import one_cell_config
from w2s.config import ConfigError, load_schema, validate_config
from w2s.engine.losses import LOSSES

ROOT = Path(__file__).resolve().parents[1]
INTERVENTION = load_schema()["definitions"]["intervention"]


def schema_blocks() -> dict[str, dict]:
    """Loss name -> the properties of its `then` block."""
    blocks = {}
    for rule in INTERVENTION["allOf"]:
        # config._describe reads the loss of a block from exactly this shape of `if`.
        assert set(rule) == {"if", "then"} and set(rule["then"]) == {"properties"}, rule
        name = rule["if"]["properties"]["loss"]["const"]
        assert rule["if"] == {"properties": {"loss": {"const": name}}}, rule
        assert name not in blocks, f"two blocks for loss {name!r}"
        blocks[name] = rule["then"]["properties"]
    return blocks


def readme_loss_rows() -> dict[str, str]:
    """Loss name -> the parameters cell of its row in config/README.md's loss table."""
    section = (ROOT / "config" / "README.md").read_text().split("## `interventions.<name>`")[1].split("\n## ")[0]
    table = section.split("| loss | parameters | meaning |\n|---|---|---|\n")[1].split("\n\n")[0]
    rows = {}
    for line in table.splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows[cells[0].strip("`")] = cells[1]
    return rows


def documented_params(cell: str) -> list[tuple[str, object]]:
    """'`alpha` (0.5), `radius` (`midweak`)' -> [('alpha', 0.5), ('radius', 'midweak')]; '–' -> []."""
    if cell == "–":
        return []
    params = []
    for item in cell.split(", "):
        match = re.fullmatch(r"`(\w+)` \((.+)\)", item)
        assert match, f"cannot read {item!r} as `name` (default)"
        params.append((match[1], yaml.safe_load(match[2].strip("`"))))
    return params


def test_schema_loss_enum_is_the_registry():
    enum = INTERVENTION["properties"]["loss"]["enum"]
    assert sorted(enum) == sorted(LOSSES) and len(enum) == len(set(enum))


def test_schema_blocks_are_for_registered_losses():
    assert set(schema_blocks()) <= set(LOSSES)


@pytest.mark.parametrize("loss", LOSSES)
def test_schema_block_restates_the_loss_params(loss):
    # A loss without parameters needs no block.
    expected = {p.name: {**p.schema, "description": p.doc} for p in LOSSES[loss].PARAMS}
    assert schema_blocks().get(loss, {}) == expected


@pytest.mark.parametrize("loss", LOSSES)
def test_every_default_matches_its_own_fragment(loss):
    for p in LOSSES[loss].PARAMS:
        jsonschema.Draft202012Validator.check_schema(p.schema)
        assert jsonschema.Draft202012Validator(p.schema).is_valid(p.default), p


def test_readme_loss_table_has_a_row_per_loss():
    assert sorted(readme_loss_rows()) == sorted(LOSSES)


@pytest.mark.parametrize("loss", LOSSES)
def test_readme_row_names_the_params_with_their_defaults(loss):
    documented = documented_params(readme_loss_rows()[loss])
    # The type too: a default written 512.0 in one place and 512 in the other would not be the same.
    assert [(n, d, type(d)) for n, d in documented] == [
        (p.name, p.default, type(p.default)) for p in LOSSES[loss].PARAMS
    ]


@pytest.mark.parametrize("loss", LOSSES)
def test_a_loss_with_its_params_at_their_defaults_is_valid_and_gets_no_defaults_added(loss, tmp_path):
    entry = {"loss": loss, **{p.name: p.default for p in LOSSES[loss].PARAMS}}
    assert validate_config(one_cell_config(tmp_path, dict(entry)))["interventions"]["x"] == entry
    # build_loss fills the defaults; were the schema to fill them too, every intervention entry, and so
    # the params of every job trained with it, would read differently from before, and Snakemake would rerun.
    assert validate_config(one_cell_config(tmp_path, {"loss": loss}))["interventions"]["x"] == {"loss": loss}


FOREIGN = [
    (loss, p)
    for loss, cls in LOSSES.items()
    for other in LOSSES.values()
    for p in other.PARAMS
    if p.name not in {q.name for q in cls.PARAMS}
]


@pytest.mark.parametrize("loss, param", FOREIGN, ids=[f"{loss}-{p.name}" for loss, p in FOREIGN])
def test_a_parameter_of_another_loss_is_rejected_naming_the_key_and_what_the_loss_takes(loss, param, tmp_path):
    takes = ", ".join(sorted(p.name for p in LOSSES[loss].PARAMS)) or "none"
    with pytest.raises(ConfigError) as e:
        validate_config(one_cell_config(tmp_path, {"loss": loss, param.name: param.default}))
    assert (
        f"config key 'interventions.x': parameter '{param.name}' is not taken by loss '{loss}'; "
        f"it takes {takes} (other keys allowed: "
    ) in str(e.value)


def test_a_bad_value_is_reported_as_such_not_as_an_unknown_parameter(tmp_path):
    with pytest.raises(ConfigError) as e:
        validate_config(one_cell_config(tmp_path, {"loss": "logconf", "alpha_max": 1.5, "warmup_frac": 0.3}))
    assert str(e.value) == (
        "invalid config:\n  config key 'interventions.x.alpha_max': 1.5 is greater than the maximum of 1"
    )
