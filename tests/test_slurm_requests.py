import math
from types import SimpleNamespace

import pytest

from w2s.execution.slurm_requests import (
    Node,
    Request,
    job_request,
    parse_gpus,
    parse_sinfo,
    parse_time_limit,
    unschedulable,
)

# `sinfo --Node --noheader --format '%R|%c|%m|%G|%l'` on a cluster of one 2-CPU CPU node and one GPU node.
SINFO = """\
cpu|2|7800|(null)|1-00:00:00
gpu|32|256000|gpu:a100:4(S:0-1),shard:8|2:00:00
"""
NODES = parse_sinfo(SINFO)


@pytest.mark.parametrize(
    "text, minutes",
    [
        ("infinite", math.inf),
        ("UNLIMITED", math.inf),
        ("30", 30),
        ("45:30", 45.5),
        ("2:00:00", 120),
        ("1-02:03:00", 1563),
    ],
)
def test_time_limits_in_minutes(text, minutes):
    assert parse_time_limit(text) == minutes


@pytest.mark.parametrize(
    "gres, gpus", [("(null)", 0), ("gpu:4", 4), ("gpu:a100:4(S:0-1),shard:8", 4), ("shard:8,gpu:h100:2", 2)]
)
def test_gpus_counted_from_generic_resources(gres, gpus):
    assert parse_gpus(gres) == gpus


def test_sinfo_lines_become_nodes():
    assert NODES == [Node("cpu", 2, 7800, 0, 1440), Node("gpu", 32, 256000, 4, 120)]


def request(**fields):
    return Request(**{"rule": "train_weak", "cpus": 1, "mem_mb": 1000, "gpus": 0, "runtime_min": 30, **fields})


def test_requests_that_a_node_can_run_pass():
    assert unschedulable([request(cpus=2), request(cpus=8, gpus=4, mem_mb=200000, runtime_min=120)], NODES) == []


def test_too_many_cpus_names_the_rule_the_largest_node_and_the_cores_setting():
    (problem,) = unschedulable([request(cpus=64)], NODES)
    assert "rule train_weak asks for 64 CPUs per task" in problem
    assert "more than 32" in problem and "--cores 32" in problem and "`cores`" in problem


def test_each_resource_over_every_node_is_named_with_its_setting():
    (problem,) = unschedulable([request(gpus=8, mem_mb=10**6, runtime_min=10**5)], NODES)
    assert "8 GPUs" in problem and "model's `gpus`" in problem
    assert "1000000 MB" in problem and "`mem_mb`" in problem
    assert "minutes (--time)" in problem and "`runtime`" in problem


def test_a_pinned_partition_is_checked_alone():
    (problem,) = unschedulable([request(cpus=8, partition="cpu")], NODES)
    assert "no node of partition cpu has more than 2" in problem and "--cores 2" in problem
    assert unschedulable([request(partition="missing")], NODES) == [
        "rule train_weak is sent to partition missing, which has no node"
    ]


def test_resources_that_no_single_node_offers_together():
    # CPUs of the GPU node with the time limit of the CPU node: each fits somewhere, never together.
    (problem,) = unschedulable([request(cpus=16, runtime_min=600)], NODES)
    assert "which no single node of any partition offers at once" in problem


def test_identical_requests_are_reported_once():
    assert len(unschedulable([request(cpus=64)] * 3 + [request(cpus=64, rule="train_ceiling")], NODES)) == 2


def job(threads, rule="train_ceiling", is_local=False, **resources):
    return SimpleNamespace(threads=threads, rule=SimpleNamespace(name=rule), is_local=is_local, resources=resources)


def test_a_job_asks_its_threads_as_cpus_unless_cpus_per_task_is_set():
    assert job_request(job(8, gpu=1, mem_mb=4000, runtime=30)) == Request("train_ceiling", 8, 4000, 1, 30)
    assert job_request(job(8, cpus_per_task=2)).cpus == 2
    # --mem-per-cpu takes precedence over --mem in the plugin's sbatch call.
    assert job_request(job(4, mem_mb_per_cpu=1000, mem_mb=500)).mem_mb == 4000
    assert job_request(job(1, slurm_partition="gpu")).partition == "gpu"
