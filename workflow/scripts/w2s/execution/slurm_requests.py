"""Refuse a SLURM run whose jobs ask for more than any node of their partitions has.

SLURM accepts such a job and leaves it PENDING for ever (Reason=PartitionConfig or Resources), and Snakemake
waits for it without a word. Checked once, after the DAG is built and before anything is submitted, against
the nodes `sinfo` lists: a job fits if one node of a partition it may go to has its CPUs, memory and GPUs,
within the partition's time limit.
"""

from __future__ import annotations

import math
import re
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

# One line per (node, partition): partition, CPUs, memory (MB), generic resources, time limit.
SINFO_FORMAT = "%R|%c|%m|%G|%l"


class UnschedulableJobsError(RuntimeError):
    pass


@dataclass(frozen=True)
class Node:
    partition: str
    cpus: int
    mem_mb: int
    gpus: int
    time_limit_min: float


@dataclass(frozen=True)
class Request:
    """What one job asks of SLURM, as the executor plugin turns its resources into sbatch options."""

    rule: str
    cpus: int
    mem_mb: int
    gpus: int
    runtime_min: float
    partition: str | None = None


def parse_time_limit(text: str) -> float:
    """Minutes of a SLURM time limit: [days-]hours:minutes:seconds, minutes:seconds or minutes."""
    text = text.strip()
    if text.lower() in ("infinite", "unlimited", "n/a"):
        return math.inf
    days, _, clock = text.rpartition("-")
    parts = [int(p) for p in clock.split(":")]
    if len(parts) == 3:
        hours, minutes, seconds = parts
    elif len(parts) == 2:
        hours, (minutes, seconds) = 0, parts
    else:
        hours, minutes, seconds = 0, parts[0], 0
    return (int(days or 0) * 24 + hours) * 60 + minutes + seconds / 60


def parse_gpus(gres: str) -> int:
    """GPUs in a node's generic resources, e.g. 'gpu:a100:4(S:0-1),shard:8' -> 4."""
    return sum(int(m[1]) for m in re.finditer(r"(?:^|,)gpu(?::[^:,(]+)?:(\d+)", gres))


def parse_sinfo(text: str) -> list[Node]:
    nodes = []
    for line in text.splitlines():
        if not line.strip():
            continue
        partition, cpus, mem, gres, limit = line.split("|")
        # A '+' marks the smallest of several values; per-node lines (sinfo -N) carry exact ones.
        nodes.append(
            Node(
                partition=partition.strip(),
                cpus=int(cpus.rstrip("+")),
                mem_mb=int(mem.rstrip("+")),
                gpus=parse_gpus(gres),
                time_limit_min=parse_time_limit(limit),
            )
        )
    return nodes


def query_nodes() -> list[Node]:
    out = subprocess.run(
        ["sinfo", "--Node", "--noheader", "--format", SINFO_FORMAT], capture_output=True, text=True, check=True
    )
    return parse_sinfo(out.stdout)


# For each resource: what the request is called in sbatch, and the setting that changes it.
_FIXES = {
    "cpus": ("CPUs per task (--cpus-per-task = the job's threads)", "lower `cores` in the profile or pass --cores {n}"),
    "mem_mb": ("MB of memory (--mem)", "lower the model's `mem_mb` in the config, or `mem_mb` in default-resources"),
    "gpus": ("GPUs (--gpus)", "lower the model's `gpus` in the config"),
    "runtime_min": ("minutes (--time)", "lower the model's `runtime` in the config, or `runtime` in default-resources"),
}
_NODE_FIELD = {"cpus": "cpus", "mem_mb": "mem_mb", "gpus": "gpus", "runtime_min": "time_limit_min"}


def _show(value: float) -> str:
    return "no limit" if math.isinf(value) else f"{value:g}" if isinstance(value, float) else str(value)


def _fits(request: Request, node: Node) -> bool:
    return all(getattr(request, field) <= getattr(node, _NODE_FIELD[field]) for field in _FIXES)


def _problem(request: Request, nodes: list[Node]) -> str:
    where = f"partition {request.partition}" if request.partition else "any partition"
    if not nodes:
        return f"rule {request.rule} is sent to partition {request.partition}, which has no node"
    parts = []
    for field, (what, fix) in _FIXES.items():
        most = max(getattr(node, _NODE_FIELD[field]) for node in nodes)
        if getattr(request, field) > most:
            parts.append(
                f"rule {request.rule} asks for {_show(getattr(request, field))} {what}, and no node of {where} "
                f"has more than {_show(most)}: {fix.format(n=most)}"
            )
    if not parts:
        parts.append(
            f"rule {request.rule} asks for {request.cpus} CPUs, {request.mem_mb} MB, {request.gpus} GPUs and "
            f"{_show(request.runtime_min)} minutes, which no single node of {where} offers at once"
        )
    return "; ".join(parts)


def unschedulable(requests: Iterable[Request], nodes: list[Node]) -> list[str]:
    """One message per distinct request that no node of its partitions can ever run."""
    problems = []
    for request in sorted(set(requests), key=lambda r: (r.rule, r.cpus, r.mem_mb, r.gpus, r.runtime_min)):
        eligible = [n for n in nodes if request.partition in (None, n.partition)]
        if not any(_fits(request, n) for n in eligible):
            problem = _problem(request, eligible)
            if problem not in problems:
                problems.append(problem)
    return problems


def job_request(job) -> Request:
    """A Snakemake job's request, read as snakemake-executor-plugin-slurm (2.8) reads it for sbatch."""
    resources = job.resources
    cpus = resources.get("cpus_per_task") or job.threads
    mem_mb = resources.get("mem_mb_per_cpu", 0) * cpus or resources.get("mem_mb", 0)
    return Request(
        rule=job.rule.name,
        cpus=max(1, int(cpus)),
        mem_mb=int(mem_mb or 0),
        gpus=int(resources.get("gpu", 0) or 0),
        runtime_min=float(resources.get("runtime", 0) or 0),
        partition=resources.get("slurm_partition") or None,
    )


def check_slurm_jobs(jobs: Iterable) -> None:
    """Raise UnschedulableJobsError, naming each job's excess and the setting to change, if some job of
    `jobs` (Snakemake jobs about to be submitted) fits no node."""
    problems = unschedulable((job_request(job) for job in jobs if not job.is_local), query_nodes())
    if problems:
        raise UnschedulableJobsError(
            "SLURM would keep these jobs pending for ever (no node can run them); nothing was submitted:\n  - "
            + "\n  - ".join(problems)
        )
