import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from w2s import gpu_lease
from w2s.gpu_lease import lease_gpus

SCRIPTS = Path(__file__).resolve().parents[1] / "workflow" / "scripts"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for key in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "SLURM_JOB_ID", "W2S_GPU_LOCK_DIR"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture
def locks(tmp_path):
    return tmp_path / "locks"


def fake_physical(monkeypatch, n):
    monkeypatch.setattr(gpu_lease, "physical_gpus", lambda: [(str(i), f"GPU-fake-{i}") for i in range(n)])


def spawn_holder(locks, visible, n, extra_env=None):
    """A child process that leases n GPUs, prints them, and holds them until its stdin closes."""
    code = textwrap.dedent(f"""
        import os, sys
        from w2s.gpu_lease import lease_gpus
        with lease_gpus({n}, lock_dir={str(locks)!r}, timeout_s=20, poll_s=0.02) as ids:
            print(",".join(ids), os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
            sys.stdin.read()
    """)
    env = {**os.environ, "PYTHONPATH": str(SCRIPTS), "CUDA_VISIBLE_DEVICES": visible, **(extra_env or {})}
    return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)


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
        [sys.executable, "-m", "w2s.gpu_lease", "1", "--lock-dir", str(locks), "--", sys.executable, "-c", probe],
        env=env, capture_output=True, text=True, check=True,
    )
    assert out.stdout.split() == ["held", "5"]
    assert "leased GPU(s) 5" in out.stderr
