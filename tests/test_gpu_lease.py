import fcntl
import importlib.util
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest

from w2s.execution import gpu_lease
from w2s.execution.gpu_lease import lease_gpus
from w2s.execution.rules import start_rule

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "SLURM_JOB_ID", "W2S_GPU_LOCK_DIR", "W2S_JOBS_PER_GPU"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def locks(tmp_path):
    return tmp_path / "locks"


def fake_physical(monkeypatch, n):
    monkeypatch.setattr(gpu_lease, "physical_gpus", lambda: [(str(i), f"GPU-fake-{i}") for i in range(n)])


def spawn_holder(locks, visible, n, extra_env=None, jobs_per_gpu=1):
    """A child process that leases n GPUs, prints them, and holds them until its stdin closes."""
    code = textwrap.dedent(f"""
        import os, sys
        from w2s.execution.gpu_lease import lease_gpus
        with lease_gpus({n}, jobs_per_gpu={jobs_per_gpu}, lock_dir={str(locks)!r}, timeout_s=20, poll_s=0.02) as ids:
            print(",".join(ids), os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
            sys.stdin.read()
    """)
    env = {**os.environ, "PYTHONPATH": str(SCRIPTS), "CUDA_VISIBLE_DEVICES": visible, **(extra_env or {})}
    return subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )


def read_lease(proc):
    line = proc.stdout.readline().split()
    assert line, f"holder exited without leasing (rc={proc.wait()})"
    ids, visible = line
    assert ids == visible, "the child's CUDA_VISIBLE_DEVICES must be exactly its leased ids"
    return ids.split(",")


def finish(proc):
    """Let the holder exit (if it still can) and return its exit status."""
    proc.stdin.close()
    rc = proc.wait(timeout=20)
    proc.stdout.close()
    return rc


def release(*procs):
    for proc in procs:
        assert finish(proc) == 0


def test_two_leases_in_one_process_get_different_devices(monkeypatch, locks):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with lease_gpus(1, lock_dir=locks) as first:
        assert os.environ["CUDA_VISIBLE_DEVICES"] == ",".join(first)
        # A second lease in this process must not see the first one's restriction to find the other GPU.
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
        with lease_gpus(1, lock_dir=locks) as second:
            assert first != second
            assert sorted(first + second) == ["0", "1"]
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
            with pytest.raises(TimeoutError):
                with lease_gpus(1, lock_dir=locks, timeout_s=0.2, poll_s=0.05):
                    pass


def test_concurrent_processes_get_disjoint_devices(locks):
    procs = [spawn_holder(locks, "0,1,2,3", 1) for _ in range(4)]
    try:
        leased = [read_lease(p) for p in procs]
        assert sorted(d for ids in leased for d in ids) == ["0", "1", "2", "3"]
    finally:
        release(*procs)


def test_multi_gpu_leases_across_processes_are_disjoint(locks):
    a, b = spawn_holder(locks, "0,1,2,3", 2), spawn_holder(locks, "0,1,2,3", 2)
    try:
        ids_a, ids_b = read_lease(a), read_lease(b)
        assert len(ids_a) == len(ids_b) == 2
        assert not set(ids_a) & set(ids_b)
    finally:
        release(a, b)


def test_lease_of_sigkilled_process_is_freed(monkeypatch, locks):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    holder = spawn_holder(locks, "0,1", 2)
    assert sorted(read_lease(holder)) == ["0", "1"]
    with pytest.raises(TimeoutError):
        with lease_gpus(1, lock_dir=locks, timeout_s=0.2, poll_s=0.05):
            pass
    os.kill(holder.pid, signal.SIGKILL)
    assert finish(holder) == -signal.SIGKILL
    with lease_gpus(2, lock_dir=locks, timeout_s=5, poll_s=0.05) as ids:
        assert ids == ["0", "1"]


def test_lease_is_freed_on_exit_and_env_restored(monkeypatch, locks):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with lease_gpus(1, lock_dir=locks) as ids:
        assert ids == ["0"]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0"
    with lease_gpus(1, lock_dir=locks, timeout_s=0.2, poll_s=0.05) as ids:
        assert ids == ["0"]


def test_asking_for_more_than_visible_fails_at_once(monkeypatch, locks):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,7")
    start = time.monotonic()
    with pytest.raises(ValueError, match=r"asked for 3 GPU\(s\) but only 2 visible \(4, 7;"):
        with lease_gpus(3, lock_dir=locks, timeout_s=60):
            pass
    assert time.monotonic() - start < 5


def test_no_gpus_fails_at_once(monkeypatch, locks):
    fake_physical(monkeypatch, 0)
    with pytest.raises(ValueError, match=r"asked for 1 GPU\(s\) but only 0 visible \(none; from nvidia-smi\)"):
        with lease_gpus(1, lock_dir=locks, timeout_s=60):
            pass


def test_busy_devices_time_out_and_release_partial_holdings(monkeypatch, locks):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    holder = spawn_holder(locks, "1", 1)
    try:
        assert read_lease(holder) == ["1"]
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=rf"could not lease 2 GPU\(s\).*'1': '{holder.pid} "):
            with lease_gpus(2, lock_dir=locks, timeout_s=0.5, poll_s=0.05):
                pass
        assert 0.5 <= time.monotonic() - start < 5
        # The failed attempt must not keep GPU 0 while it waited for GPU 1.
        with lease_gpus(1, lock_dir=locks, timeout_s=0.2, poll_s=0.05) as ids:
            assert ids == ["0"]
    finally:
        release(holder)


def test_waiting_lease_gets_device_when_freed(monkeypatch, locks):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    holder = spawn_holder(locks, "0", 1)
    assert read_lease(holder) == ["0"]
    kill_later = f"import os, time; time.sleep(0.5); os.kill({holder.pid}, {signal.SIGKILL:d})"
    killer = subprocess.Popen([sys.executable, "-c", kill_later])
    with lease_gpus(1, lock_dir=locks, timeout_s=20, poll_s=0.05) as ids:
        assert ids == ["0"]
    assert finish(holder) == -signal.SIGKILL
    killer.wait(timeout=20)


def test_zero_gpus_hides_all_devices(monkeypatch, locks):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with lease_gpus(0, lock_dir=locks) as ids:
        assert ids == []
        assert os.environ["CUDA_VISIBLE_DEVICES"] == ""
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert not locks.exists()


def test_physical_enumeration_when_nothing_is_preset(monkeypatch, locks):
    fake_physical(monkeypatch, 3)
    with lease_gpus(2, lock_dir=locks) as ids:
        assert ids == ["0", "1"]
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"
        # nvidia-smi numbers by PCI bus; CUDA must number the same way for the ids to mean the same GPUs.
        assert os.environ["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    assert "CUDA_DEVICE_ORDER" not in os.environ


def test_preset_visible_devices_restrict_candidates(monkeypatch, locks):
    fake_physical(monkeypatch, 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 1,-1,0")
    with lease_gpus(2, lock_dir=locks) as ids:
        assert ids == ["3", "1"]
        assert "CUDA_DEVICE_ORDER" not in os.environ
    with pytest.raises(ValueError, match="only 2 visible"):
        with lease_gpus(3, lock_dir=locks):
            pass


def test_slurm_leases_only_granted_devices_in_a_per_job_dir(monkeypatch, locks):
    fake_physical(monkeypatch, 4)
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    with lease_gpus(2, lock_dir=locks) as ids:
        assert ids == ["2", "3"]
        assert sorted(p.name for p in (locks / "slurm-123").iterdir()) == ["2.lock", "3.lock"]
        # Another allocation on the same node numbering its GPUs the same way is not blocked.
        monkeypatch.setenv("SLURM_JOB_ID", "124")
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
        with lease_gpus(2, lock_dir=locks, timeout_s=0.2, poll_s=0.05) as other:
            assert other == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    with pytest.raises(ValueError, match="only 2 visible"):
        with lease_gpus(3, lock_dir=locks):
            pass


def test_slurm_job_without_granted_gpus_gets_none(monkeypatch, locks):
    fake_physical(monkeypatch, 4)
    monkeypatch.setenv("SLURM_JOB_ID", "123")
    with pytest.raises(ValueError, match="SLURM job 123 granted no GPUs"):
        with lease_gpus(1, lock_dir=locks):
            pass


def test_lock_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("W2S_GPU_LOCK_DIR", str(tmp_path / "envlocks"))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-abc")
    with lease_gpus(1) as ids:
        assert ids == ["GPU-abc"]
        assert (tmp_path / "envlocks" / "GPU-abc.lock").exists()


def test_physical_gpus_parses_nvidia_smi(monkeypatch, tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '0, GPU-aaa'\necho '1, GPU-bbb'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpu_lease.physical_gpus() == [("0", "GPU-aaa"), ("1", "GPU-bbb")]
    assert gpu_lease.leased_gpu_uuids(["1", "GPU-ccc", "9"]) == {"1": "GPU-bbb", "GPU-ccc": "GPU-ccc"}


def test_failing_or_missing_nvidia_smi_means_no_gpus(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpu_lease.physical_gpus() == []
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'No devices were found'\nexit 6\n")
    smi.chmod(0o755)
    assert gpu_lease.physical_gpus() == []


def test_cli_command_itself_holds_the_lease(locks):
    probe = textwrap.dedent(f"""
        import fcntl, os
        fd = os.open({str(locks / "5.lock")!r}, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            print("free", os.environ["CUDA_VISIBLE_DEVICES"])
        except BlockingIOError:
            print("held", os.environ["CUDA_VISIBLE_DEVICES"])
    """)
    env = {**os.environ, "PYTHONPATH": str(SCRIPTS), "CUDA_VISIBLE_DEVICES": "5"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "w2s.execution.gpu_lease",
            "1",
            "--lock-dir",
            str(locks),
            "--",
            sys.executable,
            "-c",
            probe,
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["held", "5"]
    assert "leased GPU(s) 5" in out.stderr


# --- several jobs per GPU (jobs_per_gpu > 1) ---------------------------------------------------------------


def is_locked(path):
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def assert_no_lease(n, locks, jobs_per_gpu):
    with pytest.raises(TimeoutError):
        with lease_gpus(n, jobs_per_gpu=jobs_per_gpu, lock_dir=locks, timeout_s=0.2, poll_s=0.05):
            pass


def test_two_slots_let_two_jobs_share_a_device_and_a_third_waits(monkeypatch, locks):
    a, b = spawn_holder(locks, "0", 1, jobs_per_gpu=2), spawn_holder(locks, "0", 1, jobs_per_gpu=2)
    try:
        assert read_lease(a) == read_lease(b) == ["0"]
        assert is_locked(locks / "0.lock") and is_locked(locks / "0.slot1.lock")
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
        assert_no_lease(1, locks, jobs_per_gpu=2)
        assert finish(a) == 0
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
        with lease_gpus(1, jobs_per_gpu=2, lock_dir=locks, timeout_s=5, poll_s=0.05) as ids:
            assert ids == ["0"]
    finally:
        release(b)


def test_a_job_takes_the_least_busy_device_and_never_a_full_one(monkeypatch, locks):
    holder = spawn_holder(locks, "0", 1, jobs_per_gpu=2)
    try:
        assert read_lease(holder) == ["0"]
        with ExitStack() as stack:
            leased = []
            # Device 0 has a free slot and comes first, but device 1 holds fewer jobs; then they are even and
            # the visible order decides; then device 0 is full and the job goes to device 1 whatever the order.
            for _ in range(3):
                monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
                leased.append(stack.enter_context(lease_gpus(1, jobs_per_gpu=2, lock_dir=locks, timeout_s=5)))
            assert leased == [["1"], ["0"], ["1"]]
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
            assert_no_lease(1, locks, jobs_per_gpu=2)
    finally:
        release(holder)


def test_a_sigkilled_holder_frees_its_slot(monkeypatch, locks):
    a, b = spawn_holder(locks, "0", 1, jobs_per_gpu=2), spawn_holder(locks, "0", 1, jobs_per_gpu=2)
    try:
        assert read_lease(a) == read_lease(b) == ["0"]
        os.kill(a.pid, signal.SIGKILL)
        assert finish(a) == -signal.SIGKILL
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
        with lease_gpus(1, jobs_per_gpu=2, lock_dir=locks, timeout_s=5, poll_s=0.05) as ids:
            assert ids == ["0"]
            # Only the killed job's slot came free: b still holds the other.
            monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
            assert_no_lease(1, locks, jobs_per_gpu=2)
    finally:
        release(b)


def test_a_multi_gpu_job_takes_one_slot_on_each_of_distinct_devices(monkeypatch, locks, caplog):
    caplog.set_level(logging.INFO, logger="w2s.execution.gpu_lease")
    fake_physical(monkeypatch, 2)
    with lease_gpus(2, jobs_per_gpu=2, lock_dir=locks) as first:
        with lease_gpus(2, jobs_per_gpu=2, lock_dir=locks, timeout_s=5, poll_s=0.05) as second:
            assert sorted(first) == sorted(second) == ["0", "1"]
            assert_no_lease(1, locks, jobs_per_gpu=2)
    acquired = [record for _, record in lease_records(caplog) if record["event"] == "acquire"]
    assert [(r["slots"], r["jobs_per_gpu"]) for r in acquired] == [([0, 0], 2), ([1, 1], 2)]


def test_jobs_per_gpu_comes_from_the_environment(monkeypatch, locks):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with lease_gpus(1, lock_dir=locks):
        assert_no_lease(1, locks, jobs_per_gpu=None)
    monkeypatch.setenv("W2S_JOBS_PER_GPU", "2")
    with lease_gpus(1, lock_dir=locks) as first, lease_gpus(1, lock_dir=locks, timeout_s=5, poll_s=0.05) as second:
        assert first == second == ["0"]
    for bad in ("0", "two"):
        monkeypatch.setenv("W2S_JOBS_PER_GPU", bad)
        with pytest.raises(ValueError, match=rf"W2S_JOBS_PER_GPU='{bad}'.*config jobs_per_gpu"):
            with lease_gpus(1, lock_dir=locks):
                pass


def test_start_rule_passes_the_configs_jobs_per_gpu_to_leases(monkeypatch, locks):
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))
    monkeypatch.setattr(root, "level", root.level)
    start_rule(SimpleNamespace(log=[], config={"jobs_per_gpu": 3}))
    assert os.environ["W2S_JOBS_PER_GPU"] == "3"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with ExitStack() as stack:
        for _ in range(3):
            stack.enter_context(lease_gpus(1, lock_dir=locks, timeout_s=5, poll_s=0.05))
        assert_no_lease(1, locks, jobs_per_gpu=None)


def test_one_job_per_gpu_keeps_the_one_lock_file_per_device(monkeypatch, locks):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with lease_gpus(2, lock_dir=locks):
        assert_no_lease(1, locks, jobs_per_gpu=1)
    assert sorted(p.name for p in locks.iterdir()) == ["0.lock", "1.lock"]


def lease_records(caplog):
    """(message, parsed record) of every lease record logged."""
    messages = [r.getMessage() for r in caplog.records]
    return [(m, record) for m in messages if (record := gpu_lease.parse_record(m)) is not None]


def test_context_lease_logs_matching_acquire_and_release_records(monkeypatch, locks, caplog):
    caplog.set_level(logging.INFO, logger="w2s.execution.gpu_lease")
    fake_physical(monkeypatch, 3)
    with lease_gpus(2, lock_dir=locks) as ids:
        assert ids == ["0", "1"]
    (acquire_msg, acquire), (release_msg, release) = lease_records(caplog)
    assert acquire_msg.startswith("leased GPU(s) 0,1 ")
    assert release_msg.startswith("released GPU(s) 0,1;")
    for record in (acquire, release):
        assert record["host"] == socket.gethostname()
        assert record["pid"] == os.getpid()
        assert record["slurm_job_id"] is None
        assert record["devices"] == ["0", "1"]
        assert record["uuids"] == ["GPU-fake-0", "GPU-fake-1"]
        assert record["slots"] == [0, 0] and record["jobs_per_gpu"] == 1
        assert record["time"].tzinfo is not None
    assert acquire["event"] == "acquire" and release["event"] == "release"
    assert acquire["lease"] == release["lease"]
    assert acquire["ends"] == "context-exit"
    assert release["outcome"] == "ok"
    assert acquire["time"] <= release["time"]
    # Sub-second precision: the serialised time carries microseconds.
    assert re.search(r'"time": "[0-9-]+T[0-9:]+\.\d{6}\+00:00"', acquire_msg)


def test_each_lease_has_its_own_id(monkeypatch, locks, caplog):
    caplog.set_level(logging.INFO, logger="w2s.execution.gpu_lease")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    for _ in range(2):
        with lease_gpus(1, lock_dir=locks):
            pass
    ids = [record["lease"] for _, record in lease_records(caplog)]
    assert len(ids) == 4 and ids[0] == ids[1] and ids[2] == ids[3] and ids[0] != ids[2]


def test_release_record_marks_a_failed_block(monkeypatch, locks, caplog):
    caplog.set_level(logging.INFO, logger="w2s.execution.gpu_lease")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-xyz")
    with pytest.raises(RuntimeError):
        with lease_gpus(1, lock_dir=locks):
            raise RuntimeError("training failed")
    (_, acquire), (_, release) = lease_records(caplog)
    assert release["outcome"] == "error"
    assert acquire["uuids"] == release["uuids"] == ["GPU-xyz"]


def test_records_are_written_while_the_locks_are_held(monkeypatch, locks):
    """The logged interval must lie inside the exclusive hold, or the logs could not prove exclusivity."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    seen = []

    class ProbeLocks(logging.Handler):
        def emit(self, record):
            if gpu_lease.parse_record(record.getMessage()) is None:
                return
            for name in ("0.lock", "1.lock"):
                fd = os.open(locks / name, os.O_RDWR)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    seen.append("free")
                except BlockingIOError:
                    seen.append("held")
                finally:
                    os.close(fd)

    handler = ProbeLocks()
    logger = logging.getLogger("w2s.execution.gpu_lease")
    logger.addHandler(handler)
    monkeypatch.setattr(logger, "level", logging.INFO)
    try:
        with lease_gpus(2, lock_dir=locks):
            pass
    finally:
        logger.removeHandler(handler)
    assert seen == ["held"] * 4


def test_slurm_job_id_is_recorded(monkeypatch, locks, caplog):
    caplog.set_level(logging.INFO, logger="w2s.execution.gpu_lease")
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    with lease_gpus(1, lock_dir=locks):
        pass
    assert [record["slurm_job_id"] for _, record in lease_records(caplog)] == ["4242", "4242"]


def test_cli_records_the_exec_d_command_as_the_holder(locks):
    env = {**os.environ, "PYTHONPATH": str(SCRIPTS), "CUDA_VISIBLE_DEVICES": "3"}
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "w2s.execution.gpu_lease",
            "1",
            "--lock-dir",
            str(locks),
            "--",
            sys.executable,
            "-c",
            "import os; print(os.getpid())",
        ],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    records = [r for r in map(gpu_lease.parse_record, out.stderr.splitlines()) if r]
    assert len(records) == 1
    (record,) = records
    assert record["event"] == "acquire" and record["ends"] == "process-exit"
    # exec keeps the pid: the recorded pid is the process that held the GPU until it exited.
    assert record["pid"] == int(out.stdout)
    assert record["devices"] == ["3"]


def test_cli_shares_a_device_with_jobs_per_gpu(locks):
    holder = spawn_holder(locks, "5", 1, jobs_per_gpu=2)
    try:
        assert read_lease(holder) == ["5"]
        env = {**os.environ, "PYTHONPATH": str(SCRIPTS), "CUDA_VISIBLE_DEVICES": "5"}

        def cli(*options):
            command = [sys.executable, "-m", "w2s.execution.gpu_lease", *options, "--lock-dir", str(locks)]
            command += ["--timeout-s", "0.5", "1", "--", sys.executable, "-c", "pass"]
            return subprocess.run(command, env=env, capture_output=True, text=True)

        shared = cli("--jobs-per-gpu", "2")
        assert shared.returncode == 0, shared.stderr
        (record,) = [r for r in map(gpu_lease.parse_record, shared.stderr.splitlines()) if r]
        assert record["slots"] == [1] and record["jobs_per_gpu"] == 2
        assert "could not lease 1 GPU(s)" in cli().stderr
    finally:
        release(holder)


def test_parse_record_ignores_other_lines():
    assert gpu_lease.parse_record("2026-01-01 INFO w2s.engine.train: epoch 1 loss 0.3") is None
    assert gpu_lease.parse_record("leased GPU(s) 0; lease record {not json") is None
    assert gpu_lease.parse_record('x lease record {"event": "other", "time": "2026-01-01T00:00:00+00:00"}') is None


# --- the proof script over lease records -------------------------------------------------------------------


def load_proof():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_lease_proof.py"
    spec = importlib.util.spec_from_file_location("gpu_lease_proof", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


proof = load_proof()
T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def synthetic(name, start, end, uuids, host="node1", slots=()):
    return proof.Lease(
        rule="train",
        wildcards=name,
        lease=name,
        host=host,
        pid=1,
        slurm_job_id=None,
        devices=tuple(str(i) for i in range(len(uuids))),
        uuids=tuple(uuids),
        start=T0 + timedelta(seconds=start),
        end=T0 + timedelta(seconds=end),
        end_from_log_mtime=False,
        slots=tuple(slots),
    )


def conflict_names(leases):
    return sorted((a.wildcards, b.wildcards, tuple(shared)) for a, b, shared in proof.conflicts(leases))


def test_overlapping_jobs_on_different_gpus_do_not_conflict():
    leases = [
        synthetic("a", 0, 10, ["GPU-1"]),
        synthetic("b", 2, 8, ["GPU-2"]),
        synthetic("c", 5, 12, ["GPU-3", "GPU-4"]),
    ]
    assert conflict_names(leases) == []


def test_overlapping_jobs_sharing_a_gpu_conflict():
    leases = [synthetic("a", 0, 10, ["GPU-1"]), synthetic("b", 9, 12, ["GPU-2", "GPU-1"])]
    assert conflict_names(leases) == [("a", "b", ("GPU-1",))]


def test_a_long_lease_is_checked_against_every_later_overlapping_one():
    # b ends before c starts, but a still overlaps c: the scan must not stop at b.
    leases = [synthetic("c", 6, 7, ["GPU-1"]), synthetic("a", 0, 10, ["GPU-1"]), synthetic("b", 1, 2, ["GPU-2"])]
    assert conflict_names(leases) == [("a", "c", ("GPU-1",))]


def test_handover_at_the_same_instant_is_not_an_overlap():
    leases = [synthetic("a", 0, 5, ["GPU-1"]), synthetic("b", 5, 9, ["GPU-1"]), synthetic("c", 9.5, 11, ["GPU-1"])]
    assert conflict_names(leases) == []


def test_overlapping_jobs_may_share_a_gpu_in_different_slots_only():
    leases = [
        synthetic("a", 0, 10, ["GPU-1"], slots=[0]),
        synthetic("b", 1, 9, ["GPU-1", "GPU-2"], slots=[1, 0]),
        synthetic("c", 2, 8, ["GPU-2"], slots=[1]),
        # No slots recorded (before jobs_per_gpu): slot 0, so it clashes with a.
        synthetic("d", 3, 4, ["GPU-1"]),
    ]
    assert conflict_names(leases) == [("a", "d", ("GPU-1",))]
    most_jobs, most_gpus = proof.peak_concurrency(leases[:3])
    # Three jobs at once on two GPUs: a shared GPU counts once.
    assert (most_jobs.jobs, most_gpus.gpus) == (3, 2)


def test_devices_without_uuid_are_told_apart_by_host():
    leases = [
        synthetic("a", 0, 5, [None], host="n1"),
        synthetic("b", 1, 4, [None], host="n2"),
        synthetic("c", 2, 3, [None], host="n1"),
    ]
    assert conflict_names(leases) == [("a", "c", ("n1:0",))]


def test_peak_concurrency_counts_jobs_and_gpus():
    leases = [
        synthetic("a", 0, 4, ["GPU-1"]),
        synthetic("b", 1, 3, ["GPU-2"]),
        synthetic("c", 3, 5, ["GPU-2", "GPU-3"]),
    ]
    most_jobs, most_gpus = proof.peak_concurrency(leases)
    assert (most_jobs.jobs, most_jobs.at) == (2, T0 + timedelta(seconds=1))
    # b hands GPU-2 to c at t=3: counted once, so the peak is 3 GPUs (a's one and c's two), not 4.
    assert (most_gpus.gpus, most_gpus.jobs, most_gpus.at) == (3, 2, T0 + timedelta(seconds=3))


def test_processes_without_a_lease_count_only_inside_a_multi_gpu_lease_of_their_gpu():
    leases = [synthetic("pair", 0, 10, ["GPU-1", "GPU-2"]), synthetic("single", 0, 10, ["GPU-3"])]

    def seen(seconds, pid, uuid):
        return proof.GpuSample(T0 + timedelta(seconds=seconds), pid, uuid)

    workers = [seen(5, 50, "GPU-1"), seen(5, 51, "GPU-2")]
    # On a one-GPU job's device, on a GPU the pair did not lease, and after the pair's lease ended.
    strays = [seen(5, 52, "GPU-3"), seen(5, 53, "GPU-4"), seen(11, 50, "GPU-1")]
    found = proof.classify_samples(leases, [seen(5, 1, "GPU-1"), *workers, *strays])
    assert found.workers == workers
    assert found.unleased == strays
    assert found.lingering == []


def write_log(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"2026-01-01 00:00:00,000 INFO w2s.execution.gpu_lease: {line}\n" for line in lines))


def record_line(event, lease, seconds, uuids, **extra):
    record = {
        "event": event,
        "lease": lease,
        "host": "node1",
        "pid": 7,
        "slurm_job_id": None,
        "devices": [str(i) for i in range(len(uuids))],
        "uuids": uuids,
        "time": (T0 + timedelta(seconds=seconds)).isoformat(timespec="microseconds"),
        **extra,
    }
    return ("leased GPU(s) x; " if event == "acquire" else "released GPU(s) x; ") + gpu_lease.format_record(record)


def test_proof_reads_rule_logs_and_flags_shared_gpus(tmp_path, capsys):
    logs = tmp_path / "logs"
    write_log(
        logs / "train_weak" / "sms_spam" / "seed0" / "tiny.log",
        [
            "loading model",
            record_line("acquire", "w", 0, ["GPU-1"], ends="context-exit"),
            "training",
            record_line("release", "w", 4, ["GPU-1"], outcome="ok"),
        ],
    )
    write_log(
        logs / "train_ceiling" / "sms_spam" / "seed0" / "big.log",
        [
            record_line("acquire", "c", 1, ["GPU-2", "GPU-3"], ends="context-exit"),
            record_line("release", "c", 6, ["GPU-2", "GPU-3"], outcome="ok"),
        ],
    )
    write_log(logs / "summary.log", ["no GPU here"])
    leases = proof.read_leases(logs)
    assert [(lease.rule, lease.wildcards, lease.uuids, lease.end_from_log_mtime) for lease in leases] == [
        ("train_weak", "sms_spam/seed0/tiny", ("GPU-1",), False),
        ("train_ceiling", "sms_spam/seed0/big", ("GPU-2", "GPU-3"), False),
    ]
    assert proof.main([str(logs)]) == 0
    assert "most GPUs held at once: 3" in capsys.readouterr().out

    write_log(
        logs / "train_student" / "sms_spam" / "seed0" / "tiny" / "big" / "xent.log",
        [
            record_line("acquire", "s", 5, ["GPU-3"], ends="context-exit"),
            record_line("release", "s", 8, ["GPU-3"], outcome="ok"),
        ],
    )
    assert proof.main([str(logs)]) == 1
    clash = "train_ceiling sms_spam/seed0/big and train_student sms_spam/seed0/tiny/big/xent: GPU-3"
    assert clash in capsys.readouterr().out


def test_proof_ends_an_unreleased_lease_at_its_log_mtime(tmp_path):
    logs = tmp_path / "logs"
    log = logs / "accelerate_job" / "x.log"
    write_log(log, [record_line("acquire", "a", 0, ["GPU-1"], ends="process-exit"), "done"])
    finished = T0 + timedelta(seconds=30)
    os.utime(log, (finished.timestamp(), finished.timestamp()))
    (lease,) = proof.read_leases(logs)
    assert lease.end_from_log_mtime and lease.end == finished


def test_proof_reads_the_records_lease_gpus_writes(monkeypatch, locks, tmp_path):
    logs = tmp_path / "logs"
    log = logs / "train_weak" / "t" / "seed1" / "w.log"
    log.parent.mkdir(parents=True)
    handler = logging.FileHandler(log)
    logger = logging.getLogger("w2s.execution.gpu_lease")
    logger.addHandler(handler)
    monkeypatch.setattr(logger, "level", logging.INFO)
    fake_physical(monkeypatch, 2)
    try:
        with lease_gpus(1, lock_dir=locks):
            pass
        with lease_gpus(2, lock_dir=locks):
            pass
    finally:
        logger.removeHandler(handler)
        handler.close()
    first, second = proof.read_leases(logs)
    assert (first.rule, first.wildcards, first.uuids) == ("train_weak", "t/seed1/w", ("GPU-fake-0",))
    assert second.uuids == ("GPU-fake-0", "GPU-fake-1")
    assert first.end <= second.start and not proof.conflicts([first, second])


def test_proof_without_records_fails(tmp_path):
    write_log(tmp_path / "logs" / "splits" / "a.log", ["nothing leased"])
    assert proof.main([str(tmp_path / "logs")]) == 2


def test_proof_flags_a_process_seen_on_a_gpu_it_did_not_lease(tmp_path, capsys):
    logs = tmp_path / "logs"
    write_log(
        logs / "train_weak" / "t" / "seed0" / "w.log",
        [
            record_line("acquire", "w", 0, ["GPU-1", "GPU-2"], ends="context-exit"),
            record_line("release", "w", 4, ["GPU-1", "GPU-2"], outcome="ok"),
        ],
    )
    samples = tmp_path / "samples.csv"
    t = (T0 + timedelta(seconds=2)).timestamp()
    samples.write_text(f"{t}, No running processes found\n{t}, 7, GPU-2, 500 MiB\n")
    assert proof.main([str(logs), "--gpu-samples", str(samples)]) == 0
    assert "| GPU-2 |" in capsys.readouterr().out
    with samples.open("a") as out:
        out.write(f"{t + 1}, 7, GPU-3, 500 MiB\n{t + 3}, 99, GPU-1, 10 MiB\n{t - 3}, 7, GPU-1, 10 MiB\n")
    found = proof.classify_samples(proof.read_leases(logs), proof.read_gpu_samples(samples))
    stray, lingering = found.unleased, found.lingering
    # A GPU it never leased, a process without a lease once no lease held that GPU, and its own GPU before
    # its lease began.
    assert [(s.pid, s.uuid) for s in stray] == [(7, "GPU-3"), (99, "GPU-1"), (7, "GPU-1")]
    assert lingering == []
    assert proof.main([str(logs), "--gpu-samples", str(samples)]) == 1


def test_proof_reports_a_context_lingering_after_release(tmp_path, capsys):
    logs = tmp_path / "logs"
    write_log(
        logs / "train_weak" / "a.log",
        [
            record_line("acquire", "a", 0, ["GPU-1"], ends="context-exit"),
            record_line("release", "a", 4, ["GPU-1"], outcome="ok"),
        ],
    )
    later = [
        record_line("acquire", "b", 4.5, ["GPU-1"], ends="context-exit"),
        record_line("release", "b", 9, ["GPU-1"], outcome="ok"),
    ]
    write_log(logs / "train_weak" / "b.log", [line.replace('"pid": 7', '"pid": 8') for line in later])
    samples = tmp_path / "samples.csv"
    t = T0.timestamp()
    samples.write_text(
        f"{t + 2}, 7, GPU-1, 9 MiB\n{t + 4.2}, 7, GPU-1, 9 MiB\n{t + 5}, 7, GPU-1, 9 MiB\n{t + 5}, 8, GPU-1, 9 MiB\n"
    )
    leases = proof.read_leases(logs)
    found = proof.classify_samples(leases, proof.read_gpu_samples(samples))
    stray, lingering = found.unleased, found.lingering
    assert stray == []
    assert [
        (round(item.seconds_after_release, 3), item.other_holder and item.other_holder.lease) for item in lingering
    ] == [(0.2, None), (1.0, "b")]
    # Lingering is reported, not failed: the job had released its lease and finished its GPU work.
    assert proof.main([str(logs), "--gpu-samples", str(samples)]) == 0
    assert "after release: 2 sample(s)" in capsys.readouterr().out


class FakeCuda:
    """Stands in for torch.cuda, recording calls, so the release path can be tested without a GPU."""

    def __init__(self, calls, initialized=True, fail=False):
        self.calls, self.initialized, self.fail = calls, initialized, fail

    def is_initialized(self):
        return self.initialized

    def synchronize(self, *args):
        self.calls.append(("synchronize", args))
        if self.fail:
            raise RuntimeError("CUDA error: an illegal memory access was encountered")

    def empty_cache(self):
        self.calls.append(("empty_cache", ()))


def fake_torch(monkeypatch, calls, **kwargs):
    monkeypatch.setitem(sys.modules, "torch", type("FakeTorch", (), {"cuda": FakeCuda(calls, **kwargs)})())


def test_release_drains_cuda_work_and_cache_before_the_release_record(monkeypatch, locks, caplog):
    caplog.set_level(logging.INFO, logger="w2s.execution.gpu_lease")
    calls = []
    fake_torch(monkeypatch, calls)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")

    class NoteRecords(logging.Handler):
        def emit(self, record):
            if "released GPU(s)" in record.getMessage():
                calls.append(("release record", ()))

    handler = NoteRecords()
    logging.getLogger("w2s.execution.gpu_lease").addHandler(handler)
    try:
        with lease_gpus(2, lock_dir=locks):
            calls.append(("job", ()))
    finally:
        logging.getLogger("w2s.execution.gpu_lease").removeHandler(handler)
    # No device argument: synchronising a device the job never used would create a context on it.
    assert calls == [("job", ()), ("synchronize", ()), ("empty_cache", ()), ("release record", ())]


def test_release_leaves_cuda_alone_when_the_job_never_initialised_it(monkeypatch, locks):
    calls = []
    fake_torch(monkeypatch, calls, initialized=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with lease_gpus(1, lock_dir=locks):
        pass
    assert calls == []


def test_a_cuda_error_at_release_still_frees_the_devices(monkeypatch, locks, caplog):
    caplog.set_level(logging.INFO, logger="w2s.execution.gpu_lease")
    fake_torch(monkeypatch, [], fail=True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    with lease_gpus(1, lock_dir=locks):
        pass
    assert "could not drain CUDA" in caplog.text
    assert [record["event"] for _, record in lease_records(caplog)] == ["acquire", "release"]
    with lease_gpus(1, lock_dir=locks, timeout_s=0.2, poll_s=0.05) as ids:
        assert ids == ["0"]
