"""Data-parallel training inside one job: a stage runs in k processes started by `accelerate launch`.

    python -m w2s.execution.launch <stage> <kwargs.json>

runs `w2s.stages.<stage>(**kwargs)` in every process; the training library shares the work out (w2s.engine.train)
and every process ends with the same model and predictions, so only the main process need write outputs.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

# The folder that holds the w2s package, so that launched processes import this same copy.
PACKAGE_PARENT = Path(__file__).resolve().parents[2]


def rank() -> int:
    """This process's rank; 0 outside a launch. Read from the launcher's environment, so that asking does
    not initialise CUDA or a process group."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


def launch_command(num_processes: int) -> list[str]:
    """`accelerate launch` for `num_processes` processes on this machine, without a script yet.

    Port 0 makes accelerate pick a free port, so that several jobs can launch on one machine at once.
    `--multi_gpu` selects torch's launcher, which also starts several processes on CPUs (gloo).
    """
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(num_processes),
            "--num_machines", "1", "--main_process_port", "0", "--mixed_precision", "no", "--dynamo_backend", "no"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot pass {type(value).__name__} to a launched stage: use str, numbers, lists and dicts")


def run_distributed(stage: str, kwargs: dict[str, Any], num_processes: int) -> None:
    """Run `w2s.stages.<stage>(**kwargs)` in `num_processes` data-parallel processes; one runs in place.

    Paths and mappings in `kwargs` travel as JSON strings and dicts. The processes' output goes to this
    process's stderr (a rule's log file).
    """
    if num_processes < 1:
        raise ValueError(f"num_processes must be >= 1, got {num_processes}")
    if num_processes == 1:
        import w2s.stages.training

        getattr(w2s.stages.training, stage)(**kwargs)
        return
    paths = [str(PACKAGE_PARENT), os.environ.get("PYTHONPATH")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    with tempfile.TemporaryDirectory(prefix="w2s-launch-") as tmp:
        kwargs_path = Path(tmp) / "kwargs.json"
        kwargs_path.write_text(json.dumps(kwargs, default=_jsonable))
        command = launch_command(num_processes) + ["-m", "w2s.execution.launch", stage, str(kwargs_path)]
        subprocess.run(command, check=True, env=env, stdout=sys.stderr, stderr=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    stage, kwargs_path = argv if argv is not None else sys.argv[1:]
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s rank{rank()} %(levelname)s %(name)s: %(message)s")
    import torch.distributed

    import w2s.stages.training

    try:
        getattr(w2s.stages.training, stage)(**json.loads(Path(kwargs_path).read_text()))
    finally:
        # Without it gloo can abort the interpreter at exit ("terminate called without an active exception").
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
