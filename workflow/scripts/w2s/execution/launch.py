"""Data-parallel training inside one job: a training stage runs in k processes started by `accelerate launch`.

    python -m w2s.execution.launch <module:function> <arguments.json>

runs `function(TrainingJob(**job), **inputs)` in every process; the engine shares the work out
(w2s.engine.train) and every process ends with the same model and predictions, so only the main process
need write outputs.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from w2s.execution.job import TrainingJob
from w2s.execution.ranks import rank

# The folder that holds the w2s package, so that launched processes import this same copy.
PACKAGE_PARENT = Path(__file__).resolve().parents[2]

Stage = Callable[..., None]


def launch_command(num_processes: int) -> list[str]:
    """`accelerate launch` for `num_processes` processes on this machine, without a script yet.

    Port 0 makes accelerate pick a free port, so that several jobs can launch on one machine at once.
    `--multi_gpu` selects torch's launcher, which also starts several processes on CPUs (gloo).
    """
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        str(num_processes),
        "--num_machines",
        "1",
        "--main_process_port",
        "0",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
    ]


def _jsonable(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot pass {type(value).__name__} to a launched stage: use str, numbers, lists and dicts")


def stage_name(stage: Stage) -> str:
    """`module:function`, the name a launched process imports the stage by."""
    return f"{stage.__module__}:{stage.__qualname__}"


def import_stage(name: str) -> Stage:
    module, _, function = name.partition(":")
    return getattr(importlib.import_module(module), function)


def launch(stage: Stage, job: TrainingJob, inputs: dict[str, Any], num_processes: int) -> None:
    """Run `stage(job, **inputs)` in `num_processes` data-parallel processes; one runs in place.

    Paths and mappings in `inputs` travel as JSON strings and dicts. The processes' output goes to this
    process's stderr (a rule's log file).
    """
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if num_processes == 1:
        stage(job, **inputs)
        return
    paths = [str(PACKAGE_PARENT), os.environ.get("PYTHONPATH")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    with tempfile.TemporaryDirectory(prefix="w2s-launch-") as tmp:
        arguments = Path(tmp) / "arguments.json"
        arguments.write_text(json.dumps({"job": job.to_json(), "inputs": inputs}, default=_jsonable))
        command = launch_command(num_processes) + ["-m", "w2s.execution.launch", stage_name(stage), str(arguments)]
        subprocess.run(command, check=True, env=env, stdout=sys.stderr, stderr=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    name, arguments_path = argv if argv is not None else sys.argv[1:]
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s rank{rank()} %(levelname)s %(name)s: %(message)s")
    import torch.distributed

    arguments = json.loads(Path(arguments_path).read_text())
    try:
        import_stage(name)(TrainingJob(**arguments["job"]), **arguments["inputs"])
    finally:
        # Without it gloo can abort the interpreter at exit ("terminate called without an active exception").
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
