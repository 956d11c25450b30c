"""Config validation: the schema (types, ranges, defaults) and the cross-references a schema cannot express.

Every error names the config key and what is allowed, and is raised when the Snakefile is parsed, i.e.
before any job runs.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from w2s.coercion import coerce
from w2s.data.tasks import TASKS
from w2s.labels.interventions import frozen_layers_problems, probe_problems, s2s_model_problems
from w2s.labels.interventions import problems as intervention_problems
from w2s.layout import SPLITS

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    pass


def _with_defaults(validator_class):
    """Extend a validator so that `default` values are filled in while validating (as Snakemake's does)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = []
    for p in error.absolute_path:
        parts.append(f"[{p}]" if isinstance(p, int) else (f".{p}" if parts else str(p)))
    return "".join(parts) or "<top level>"


def _unknown_loss_parameters(key: str, entry: dict, schema: dict) -> str | None:
    """The message for an intervention's keys that neither `properties` nor its loss's if/then block lists.

    None when there are none: a parameter with a bad value fails its loss's block, which leaves every key of
    the block unevaluated, but the bad value has its own error.
    """
    loss = entry["loss"]
    takes = next(
        (
            sorted(rule["then"]["properties"])
            for rule in schema["allOf"]
            if rule["if"]["properties"]["loss"]["const"] == loss
        ),
        [],
    )
    unknown = sorted(set(entry) - set(schema["properties"]) - set(takes))
    if not unknown:
        return None
    names = ", ".join(map(repr, unknown))
    subject = f"parameter {names} is" if len(unknown) == 1 else f"parameters {names} are"
    return (
        f"config key '{key}': {subject} not taken by loss {loss!r}; it takes {', '.join(takes) or 'none'} "
        f"(other keys allowed: {', '.join(sorted(schema['properties']))})"
    )


def _describe(error: jsonschema.ValidationError) -> str | None:
    """The error as a message that names the config key and the fix; None when it only echoes another error."""
    key = _key_path(error)
    if "propertyNames" in error.absolute_schema_path:
        return (
            f"config key '{key}.{error.instance}': {error.instance!r} is not a safe name; "
            f"{error.schema['description']} (pattern {error.schema['pattern']})"
        )
    if error.validator == "unevaluatedProperties" and "loss" in error.instance:
        return _unknown_loss_parameters(key, error.instance, error.schema)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"config key '{key}': {error.message}{hint}"
    if error.validator == "not" and "required" in error.validator_value:
        return f"config key '{key}': {error.validator_value['required']} cannot be combined with the other keys given"
    if error.schema is False:
        return (
            f"config key '{key}': a parameter with value {error.instance!r} does not apply here "
            "(e.g. k for logreg, C for knn/topo); remove it"
        )
    if error.validator == "enum":
        return f"config key '{key}': {error.instance!r} is not allowed; choose one of {error.validator_value}"
    return f"config key '{key}': {error.message}"


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    return yaml.safe_load(Path(path).read_text())


def validate_config(config: dict[str, Any], schema: dict | None = None) -> dict[str, Any]:
    """Validate in place (filling defaults) and return the config; raise ConfigError listing every problem."""
    schema = load_schema() if schema is None else schema
    coerce(config, schema, schema)
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(filter(None, map(_describe, errors))))
    problems = _cross_reference_problems(config)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
    for section in ("models", "interventions"):
        config[section] = {name: _canonical(entry) for name, entry in config[section].items()}
    for section in ("splits", "train", "activations"):
        config[section] = _canonical(config[section])
    return config


def schema_defaults() -> tuple[dict[str, Any], dict[str, Any]]:
    """A model entry and the `train` section as the schema fills them when a config leaves every key out:
    the training defaults for code that trains outside the workflow (tests, benchmarks), so that they have
    no second copy."""
    config = validate_config(
        {
            "tasks": [next(iter(TASKS))],
            "seeds": [0],
            "weak_models": ["m"],
            "strong_models": ["m"],
            "models": {"m": {"path": "org/model"}},
            "interventions": {"xent": {}},
        }
    )
    entry = {k: v for k, v in config["models"]["m"].items() if k != "path"}
    return entry, config["train"]


def _canonical(value: Any) -> Any:
    """Mappings with their keys sorted, at every depth. Rules pass config entries as params, and Snakemake
    reruns a job whose params read differently: without this, writing out a default or reordering keys in
    the YAML would retrain every model it touches."""
    if isinstance(value, dict):
        return {k: _canonical(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def _cross_reference_problems(config: dict[str, Any]) -> list[str]:
    problems = []
    for i, task in enumerate(config["tasks"]):
        if task not in TASKS:
            problems.append(f"config key 'tasks[{i}]': unknown task {task!r}; known tasks: {', '.join(sorted(TASKS))}")
    for role in ("weak_models", "strong_models"):
        for i, alias in enumerate(config[role]):
            if alias not in config["models"]:
                problems.append(
                    f"config key '{role}[{i}]': model alias {alias!r} is not defined under 'models' "
                    f"(defined: {', '.join(sorted(config['models']))})"
                )
    splits = config["splits"]
    wanted = sum(splits[name] for name in SPLITS)
    for task in config["tasks"]:
        if task in TASKS and wanted > TASKS[task].n_examples:
            problems.append(
                f"config key 'splits': weak_train + strong_train + val + test = {wanted}, but task {task!r} has "
                f"only {TASKS[task].n_examples} unique examples; lower the split sizes"
            )
    for alias, model in config["models"].items():
        path = model["path"]
        looks_local = path.startswith(("/", "./", "../", "~"))
        package = model.get("offline_package")
        if package and (looks_local or Path(path).expanduser().is_dir()):
            # The package would win and the directory be ignored without a word.
            problems.append(
                f"config key 'models.{alias}.path': local directory {path!r} cannot be combined with "
                f"offline_package {package!r}, which would be loaded instead; remove offline_package to load the "
                "directory, or give the model's hub id as path to load the package"
            )
        elif looks_local and not Path(path).expanduser().is_dir():
            problems.append(
                f"config key 'models.{alias}.path': local model directory {path!r} does not exist; give an "
                "existing directory or a Hugging Face hub id such as 'openai-community/gpt2'"
            )
        if model.get("gpu_model") and model["gpus"] < 1:
            problems.append(
                f"config key 'models.{alias}.gpu_model': {model['gpu_model']!r} is a GPU type but gpus is 0; "
                "set gpus >= 1 or remove gpu_model"
            )
        if model["micro_batch_size"] > model["batch_size"] or model["batch_size"] % model["micro_batch_size"]:
            problems.append(
                f"config key 'models.{alias}.micro_batch_size': {model['micro_batch_size']} must divide "
                f"batch_size {model['batch_size']} (gradient accumulation keeps the effective batch)"
            )
    problems.extend(intervention_problems(config["interventions"], config["models"]))
    problems.extend(probe_problems(config["interventions"], splits))
    problems.extend(s2s_model_problems(config))
    problems.extend(frozen_layers_problems(config))
    return problems
