"""Which process of a data-parallel job this is, read from the launcher's environment, so that asking does
not initialise CUDA or a process group."""

from __future__ import annotations

import os


def rank() -> int:
    """This process's rank; 0 outside a launch."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0
