"""What every rule script does first: send logs to the rule's log file and pin threads and hub access."""
from __future__ import annotations

import logging
import os
import sys


def start_rule(log_path: str | None, threads: int = 1, hub_offline: bool = False) -> None:
    if log_path:
        stream = open(log_path, "a", buffering=1)
        sys.stderr = stream
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    if hub_offline:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["HF_DATASETS_OFFLINE"] = "1"
    import torch

    torch.set_num_threads(max(1, int(threads)))
