"""Config values read as the schema's types, where Snakemake's `--config` hands them over as strings.

`snakemake --config 'seeds=[0]'` gives ['0'], `seeds=0` gives 0 where a list is wanted, and mapping values
come as text (`splits={test: 50}` gives {'test': '50'}); the schema says what was meant.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import jsonschema

INTEGER = re.compile(r"[+-]?\d+")
NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")
TYPES = jsonschema.Draft202012Validator.TYPE_CHECKER


def coerce(value: Any, schema: Any, root: dict) -> Any:
    """`value` read as `schema` wants it where the reading is unambiguous; mappings are updated in place.

    Snakemake's --config hands over the items of a list or mapping as strings (`seeds=[0]` gives ['0']) and
    a bare scalar where a list is wanted (`seeds=0`). A string becomes an integer, number, boolean or null
    where the schema wants one of those and no string, and a scalar becomes a one-item list where the schema
    wants a list of such items; anything else is left as it is, for the validator to report.
    """
    schema = _deref(schema, root)
    if not isinstance(schema, dict):
        return value
    for key in ("oneOf", "anyOf"):
        if key in schema:
            value = _coerce_alternatives(value, schema[key], root)
    for sub in schema.get("allOf", []):
        value = coerce(value, sub, root)
    if "if" in schema and "then" in schema and _validator(schema["if"], root).is_valid(value):
        value = coerce(value, schema["then"], root)
    types = _types(schema, root)
    if isinstance(value, str):
        value = _scalar(value, types)
    if "array" in types and not isinstance(value, (list, dict)) and not _is_a(value, types):
        item = coerce(value, schema.get("items"), root)
        if _is_a(item, _types(schema.get("items"), root)):
            value = [item]
    if isinstance(value, list):
        value = [coerce(item, schema.get("items"), root) for item in value]
    if isinstance(value, dict):
        for name in value:
            value[name] = coerce(
                value[name], schema.get("properties", {}).get(name, schema.get("additionalProperties")), root
            )
    return value


def _coerce_alternatives(value: Any, branches: list, root: dict) -> Any:
    """The reading of the one branch that reads `value` otherwise, unless some branch takes it as it is."""
    if any(_validator(branch, root).is_valid(value) for branch in branches):
        return value
    readings = [coerce(copy.deepcopy(value), branch, root) for branch in branches]
    changed = [reading for reading in readings if reading != value]
    return changed[0] if len(changed) == 1 else value


def _scalar(text: str, types: list[str]) -> Any:
    if "string" in types:
        return text
    if ("integer" in types or "number" in types) and INTEGER.fullmatch(text):
        return int(text)
    if "number" in types and NUMBER.fullmatch(text):
        return float(text)
    if "boolean" in types and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if "null" in types and text.lower() in ("null", "~"):
        return None
    return text


def _types(schema: Any, root: dict) -> list[str]:
    schema = _deref(schema, root)
    types = schema.get("type", []) if isinstance(schema, dict) else []
    return [types] if isinstance(types, str) else types


def _is_a(value: Any, types: list[str]) -> bool:
    return any(TYPES.is_type(value, t) for t in types)


def _deref(schema: Any, root: dict) -> Any:
    """The schema that a `{$ref: "#/..."}` points to (this schema gives no keywords beside a $ref)."""
    if not isinstance(schema, dict) or "$ref" not in schema:
        return schema
    node = root
    for part in schema["$ref"].removeprefix("#/").split("/"):
        node = node[part]
    return _deref(node, root)


def _validator(schema: Any, root: dict) -> jsonschema.Validator:
    # Made from the root schema, so that the $refs inside `schema` resolve.
    return jsonschema.Draft202012Validator(root).evolve(schema=schema)
