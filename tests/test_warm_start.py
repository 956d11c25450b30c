"""Warm start (w2s.execution.warm): a rule script handed to a worker that has already imported the libraries
runs as it would in its own process (working directory, environment, argv, streams, exit status), and a job
dies when its client or its worker dies."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tiny_workflow import ROOT
from w2s.clock import job_seconds
from w2s.execution import rules, warm

# A rule script in miniature: it hands itself off as start_rule does, then reports what its process sees. It
# reads W2S_TEST_* variables, which (like every W2S_*) leave the choice of worker alone.
SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    from w2s.execution import warm
    if not warm.in_worker():
        status = warm.hand_off(sys.argv[0], sys.argv)
        if status is not None:
            sys.exit(status)
    report = {
        "pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(), "argv": sys.argv,
        "marker": os.environ.get("W2S_TEST_MARKER"), "torch_imported_before": "torch" in sys.modules,
        "job_start": os.environ.get("W2S_JOB_START_TIME"), "path0": sys.path[0],
    }
    print(json.dumps(report), flush=True)
    print("a line on stderr", file=sys.stderr, flush=True)
    if os.environ.get("W2S_TEST_PID_FILE"):
        open(os.environ["W2S_TEST_PID_FILE"], "w").write(str(os.getpid()))
    time.sleep(float(os.environ.get("W2S_TEST_SLEEP", "0")))
    if os.environ.get("W2S_TEST_FAIL"):
        raise RuntimeError("the job failed on purpose")
    sys.exit(int(os.environ.get("W2S_TEST_CODE", "0")))
    """
)


def short_dir() -> Path:
    # A socket's path may hold at most 107 bytes, more than pytest's temporary folders can promise.
    return Path(tempfile.mkdtemp(prefix="w2s-warm-test-", dir="/tmp"))


@pytest.fixture(scope="module")
def script():
    folder = short_dir()
    path = folder / "rule_script.py"
    path.write_text(SCRIPT)
    yield path
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def shared_dir(script):
    """A folder with a worker ready, shared by the tests that need one."""
    folder = short_dir()
    ready_worker(script, folder)
    yield folder
    stop_workers(folder)
    shutil.rmtree(folder, ignore_errors=True)


def stop_workers(folder: Path) -> None:
    for pid in worker_pids(folder):
        os.kill(pid, signal.SIGKILL)


def worker_pids(folder: Path) -> list[int]:
    """The workers serving sockets in `folder`, found by their command lines, which their forked jobs share."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode()
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, PermissionError):
                continue
            if "w2s.execution.warm" in cmdline and str(folder) in cmdline:
                parents[int(entry.name)] = ppid
    return [pid for pid, ppid in parents.items() if ppid not in parents]


def client_env(folder: Path, **extra: str) -> dict[str, str]:
    pythonpath = os.pathsep.join(p for p in (str(ROOT / "workflow" / "scripts"), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath, warm.DIR_ENV: str(folder), **extra}
    # pytest names the test and its phase here: a fixture's client and a test's would need workers of their own.
    env.pop("PYTEST_CURRENT_TEST", None)
    return env


def start_client(script: Path, folder: Path, *args: str, cwd: Path | None = None, **extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        cwd=cwd or script.parent,
        env=client_env(folder, **extra),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_client(script: Path, folder: Path, *args: str, **kwargs) -> tuple[int, dict, str]:
    proc = start_client(script, folder, *args, **kwargs)
    out, err = proc.communicate(timeout=300)
    return proc.returncode, (json.loads(out.splitlines()[0]) if out.strip() else {}), err


def gone(pid: int, within_s: float = 5.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        # A child of a worker is reaped by the worker; until then /proc still lists it as a zombie.
        try:
            if Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


def ready_worker(script: Path, folder: Path) -> int:
    """Start a worker for `folder` as the first client does, and wait until it listens; return its pid."""
    code, report, err = run_client(script, folder)
    assert code == 0, err
    assert report["pid"] != report["ppid"] and not report["torch_imported_before"]  # a fresh process
    deadline = time.monotonic() + 300
    while True:
        code, report, err = run_client(script, folder)
        assert code == 0, err
        if report["torch_imported_before"]:
            return report["ppid"]
        assert time.monotonic() < deadline, "no worker listened within 300 s"
        time.sleep(0.5)


def wait_for(path: Path, proc: subprocess.Popen, within_s: float = 120) -> int:
    deadline = time.monotonic() + within_s
    while not path.exists() or not path.read_text():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return int(path.read_text())


def test_jobs_run_in_children_of_one_worker_as_in_their_own_process(script, shared_dir, tmp_path):
    code, first, err = run_client(script, shared_dir, "a", "b", cwd=tmp_path, W2S_TEST_MARKER="one")
    assert code == 0, err
    assert first["torch_imported_before"], (first, err)  # what makes the start warm: the worker imported it
    assert first["cwd"] == str(tmp_path) and first["marker"] == "one"
    assert first["argv"] == [str(script), "a", "b"]
    assert first["path0"] == str(script.parent)  # as `python script.py` puts it first
    assert "a line on stderr" in err  # the client's own streams, passed to the child
    assert float(first["job_start"]) < time.time()

    code, second, err = run_client(script, shared_dir, W2S_TEST_CODE="3", W2S_TEST_MARKER="two")
    assert code == 3, err
    assert second["marker"] == "two"
    # Two jobs, two processes of their own, one worker that forked both.
    assert second["pid"] != first["pid"] and second["ppid"] == first["ppid"]
    assert worker_pids(shared_dir) == [first["ppid"]]


def test_an_uncaught_exception_fails_the_job_with_the_scripts_traceback(script, shared_dir):
    code, _, err = run_client(script, shared_dir, W2S_TEST_FAIL="1")
    assert code == 1
    assert "RuntimeError: the job failed on purpose" in err
    assert f'File "{script}"' in err and "warm.py" not in err


def test_a_killed_client_takes_its_job_with_it(script, shared_dir, tmp_path):
    pid_file = tmp_path / "pid"
    client = start_client(script, shared_dir, W2S_TEST_SLEEP="60", W2S_TEST_PID_FILE=str(pid_file))
    child = wait_for(pid_file, client)
    client.kill()
    client.wait()
    assert gone(child)


def test_sigterm_to_the_client_ends_the_job_before_the_client(script, shared_dir, tmp_path):
    pid_file = tmp_path / "pid"
    client = start_client(script, shared_dir, W2S_TEST_SLEEP="60", W2S_TEST_PID_FILE=str(pid_file))
    child = wait_for(pid_file, client)
    client.terminate()
    assert client.wait(timeout=30) == 128 + signal.SIGTERM
    assert gone(child, within_s=0.5)


def test_a_dead_worker_fails_its_jobs_and_the_next_client_starts_another(script, tmp_path):
    folder = short_dir()
    try:
        ready_worker(script, folder)
        pid_file = tmp_path / "pid"
        client = start_client(script, folder, W2S_TEST_SLEEP="60", W2S_TEST_PID_FILE=str(pid_file))
        child = wait_for(pid_file, client)
        [worker] = worker_pids(folder)
        os.kill(worker, signal.SIGKILL)
        assert client.wait(timeout=30) == 1
        # Before reading the client's stderr, which the child holds open as long as it lives.
        assert gone(child)
        assert "the worker running this job died" in client.stderr.read()
        # Its socket file is left behind; the next client runs in its own process and starts a worker, which
        # replaces the file.
        assert list(folder.glob("*.sock"))
        replacement = ready_worker(script, folder)
        assert replacement != worker and worker_pids(folder) == [replacement]
    finally:
        stop_workers(folder)
        shutil.rmtree(folder, ignore_errors=True)


def test_clients_that_find_no_worker_run_at_once_and_start_one_worker_which_exits_when_idle(script):
    folder = short_dir()
    try:
        clients = [start_client(script, folder, **{warm.IDLE_ENV: "2"}) for _ in range(3)]
        reports = [json.loads(c.communicate(timeout=300)[0]) for c in clients]
        # None waited for the worker's imports: each ran in its own process.
        assert [r["pid"] for r in reports] == [c.pid for c in clients]
        assert not any(r["torch_imported_before"] for r in reports)
        deadline = time.monotonic() + 300
        while not list(folder.glob("*.sock")):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        [worker] = worker_pids(folder)  # one worker, though three clients found none
        assert gone(worker, within_s=60)
        assert not list(folder.glob("*.sock"))
    finally:
        stop_workers(folder)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_worker_serves_only_clients_of_its_code_environment_and_slurm_job(tmp_path, monkeypatch):
    package = tmp_path / "w2s"
    shutil.copytree(warm.PACKAGE, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(warm, "PACKAGE", package)
    env = {"HOME": "/home/x", "PATH": "/bin"}
    base = warm.fingerprint(env)
    # Read after the fork (CUDA's start, the job's own code): any value shares the worker.
    assert warm.fingerprint({**env, "CUDA_VISIBLE_DEVICES": "1", "SLURM_STEP_ID": "7", "W2S_JOBS_PER_GPU": "2"}) == base
    # A worker's children run in the SLURM job that started it: never another allocation's work.
    assert warm.fingerprint({**env, "SLURM_JOB_ID": "7"}) != warm.fingerprint({**env, "SLURM_JOB_ID": "8"})
    # Read when libraries are imported, i.e. by the worker.
    assert warm.fingerprint({**env, "HF_HUB_OFFLINE": "1"}) != base
    assert warm.fingerprint({**env, "TQDM_DISABLE": "1"}) != base
    assert warm.fingerprint({**env, "OMP_NUM_THREADS": "4"}) != base
    assert warm.fingerprint({**env, "PYTHONPATH": "/elsewhere"}) != base
    edited = package / "engine" / "losses.py"
    edited.write_text(edited.read_text() + "\n# edited\n")
    assert warm.fingerprint(env) != base


def fake_rule(**config) -> SimpleNamespace:
    return SimpleNamespace(log=[], config=config)


def test_start_rule_hands_off_by_default_with_the_job_environment_already_set(monkeypatch):
    seen = {}

    def hand_off(script, argv):
        seen["offline"] = os.environ.get("HF_HUB_OFFLINE")
        seen["jobs_per_gpu"] = os.environ.get("W2S_JOBS_PER_GPU")
        return 5

    monkeypatch.setattr(warm, "hand_off", hand_off)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(os, "environ", dict(os.environ))
    with pytest.raises(SystemExit) as end:
        rules.start_rule(fake_rule(hub_offline=True, jobs_per_gpu=3))
    assert end.value.code == 5
    # Set before the hand-off: the worker is chosen by, and imports under, the job's environment.
    assert seen == {"offline": "1", "jobs_per_gpu": "3"}


@pytest.mark.parametrize("config, worker", [({"warm_start": False}, False), ({}, True)])
def test_start_rule_runs_the_script_in_place_when_warm_start_is_off_or_it_runs_in_a_worker(monkeypatch, config, worker):
    monkeypatch.setattr(warm, "hand_off", lambda *a: pytest.fail("handed off"))
    monkeypatch.setattr(warm, "_in_worker", worker)
    monkeypatch.setattr(os, "environ", dict(os.environ))
    rules.start_rule(fake_rule(**config))


def test_start_rule_runs_the_script_in_place_when_no_worker_is_ready(monkeypatch, tmp_path):
    started = []
    monkeypatch.setattr(warm, "_start_worker", lambda path, env: started.append(path))
    monkeypatch.setattr(os, "environ", {**os.environ, warm.DIR_ENV: str(tmp_path)})
    rules.start_rule(fake_rule())
    assert [p.parent for p in started] == [tmp_path]


def test_a_forked_jobs_start_up_counts_from_its_clients_start(monkeypatch):
    monkeypatch.setenv("W2S_JOB_START_TIME", repr(time.time() - 100))
    assert 100 <= job_seconds() < 110
