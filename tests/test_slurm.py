"""The tiny end-to-end config submitted to a real single-node SLURM through profiles/slurm.

tests/slurm/start.sh brings the cluster up (as root, from the Debian packages slurm-wlm, slurmdbd, munge and
mariadb-server) with fake GPUs as gres. The strong model asks for one GPU, so its jobs get a gres GPU,
lease it through w2s.execution.gpu_lease and, with torch built for CPU, still train on the CPU. With CI=true a
cluster that cannot be brought up fails this test; elsewhere missing packages skip it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml

from test_workflow import job_counts
from tiny_workflow import (
    LONG_CEILING,
    LONG_CEILING_STEPS,
    ROOT,
    long_ceiling_config,
    snakemake_command,
    tiny_config,
    wait_for_file,
)
from w2s.engine.checkpoint import NAME as CHECKPOINT_FILE
from w2s.execution.gpu_lease import parse_record

pytestmark = [pytest.mark.slurm, pytest.mark.e2e]

CLUSTER_SCRIPTS = ROOT / "tests" / "slurm"
# Absolute: the profile's relative paths (partitions.yaml) are resolved before --directory applies.
PROFILE = ROOT / "profiles" / "slurm"
PROGRAMS = ("munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct")
PACKAGES = "slurm-wlm slurmdbd munge mariadb-server"

# The two students (one per intervention) share one SLURM job. The plugin's jobstep runs a group's jobs one
# after another, each in its own srun step, so a group needs the GPU of one job: with gpu scoped local,
# --resources gpu=1 makes every layer of a group one job, and the group asks for 1 GPU and the sum of its
# students' runtimes.
STUDENTS_PER_GROUP, GPUS_PER_GROUP = 2, 1
GROUPING = (
    "--groups",
    "train_student=students",
    "--group-components",
    f"students={STUDENTS_PER_GROUP}",
    "--resources",
    f"gpu={GPUS_PER_GROUP}",
)
# Every job computes with 2 threads, as in the local run (--cores 2): the same arithmetic, the same numbers.
THREADS = ("--cores", "2", "--max-threads", "2")
GPU_RULES = {"train_ceiling", "activations", "train_student"}
STRONG_RUNTIME_MIN = 30
RUN_TIMEOUT_S = 2400


@pytest.fixture(scope="module")
def slurm_conf():
    """The test cluster's SLURM_CONF. A cluster this fixture started is stopped afterwards; one that was
    already up is left up."""
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    problem = None
    if missing:
        problem = f"the SLURM test cluster needs {', '.join(missing)}: apt-get install {PACKAGES}"
    elif os.geteuid() != 0:
        problem = "the SLURM test cluster runs its daemons as root"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(problem)
        pytest.skip(problem)
    start = subprocess.run(["bash", str(CLUSTER_SCRIPTS / "start.sh")], capture_output=True, text=True, timeout=300)
    assert start.returncode == 0, f"tests/slurm/start.sh failed:\n{start.stderr[-5000:]}"
    conf = re.search(r"^export SLURM_CONF=(\S+)$", start.stdout, re.MULTILINE)[1]
    yield conf
    if "already up" not in start.stderr:
        subprocess.run(["bash", str(CLUSTER_SCRIPTS / "stop.sh")], check=True, timeout=120)


def launch(workdir: Path, config: dict, args: list[str], env: dict) -> subprocess.Popen:
    # SIGINT back to its default in Snakemake, as at a terminal: a test run started in the background by a
    # non-interactive shell ignores SIGINT, and a child would inherit that and never see the test's Ctrl-C.
    return subprocess.Popen(
        snakemake_command(workdir, config, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def finish(proc: subprocess.Popen, what: str) -> str:
    try:
        out, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        stop(proc)
        out, _ = proc.communicate(timeout=120)
        raise AssertionError(f"{what} did not finish within {RUN_TIMEOUT_S} s:\n{out[-5000:]}") from None
    assert proc.returncode == 0, f"{what} failed:\n{out[-8000:]}"
    return out


def stop(proc: subprocess.Popen) -> None:
    """Stop a run and its SLURM jobs: SIGINT makes Snakemake scancel them (SIGTERM would wait for them)."""
    proc.send_signal(signal.SIGINT)


def stop_unfinished(*procs: subprocess.Popen) -> None:
    """A failed run must not leave the other one running past the test."""
    for proc in procs:
        if proc.poll() is None:
            stop(proc)
            proc.communicate(timeout=120)


def environments(slurm_conf: str, local_dir: Path) -> tuple[dict, dict]:
    """The environments of a run submitted to the test cluster and of a local run of the same config."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "CUDA_"))}
    # No GPU here: the local run leases a stand-in device so that its config can equal the SLURM run's.
    return (
        {**base, "SLURM_CONF": slurm_conf, "PYTHONUNBUFFERED": "1"},
        {**base, "CUDA_VISIBLE_DEVICES": "0", "W2S_GPU_LOCK_DIR": str(local_dir / "gpu-locks")},
    )


def gpu_config(workdir: Path) -> dict:
    """The tiny config with a strong model that asks for a GPU; one seed and one epoch keep it short."""
    config = tiny_config()
    config["seeds"] = [0]
    config["models"][config["strong_models"][0]].update(gpus=1, runtime=STRONG_RUNTIME_MIN, epochs=1)
    return config


# The README's SLURM command, run as a user runs it: from the root of a clone that holds the default
# config/config.yaml, with a preset of its own.
PRESET = "config/tiny-gpu.yaml"
README_COMMAND = [sys.executable, "-m", "snakemake", "--workflow-profile", "profiles/slurm", "--configfile", PRESET]


def clone(root: Path) -> None:
    """A copy of the repository's tracked files, as a fresh clone has them."""
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in filter(None, tracked.stdout.split("\0")):
        if (ROOT / name).is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, root / name)


@pytest.fixture(scope="module")
def runs(slurm_conf, tmp_path_factory):
    """The same config run twice at once: submitted to SLURM with the README's command (from a clone's
    root, where config/config.yaml must not leak into any job's config), and locally."""
    slurm_dir, local_dir = tmp_path_factory.mktemp("slurm-run"), tmp_path_factory.mktemp("local-run")
    slurm_env, local_env = environments(slurm_conf, local_dir)
    clone(slurm_dir)
    (slurm_dir / PRESET).write_text(yaml.safe_dump(gpu_config(slurm_dir)))

    def readme_command(*args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [*README_COMMAND, *THREADS, *GROUPING, *args],
            cwd=slurm_dir,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=slurm_env,
        )

    planned = job_counts(finish(readme_command("-n", "--quiet", "rules"), "the dry run"))
    started = datetime.now() - timedelta(minutes=1)
    slurm = readme_command()
    local = launch(local_dir, gpu_config(local_dir), ["--cores", "2"], local_env)
    try:
        slurm_out = finish(slurm, "the SLURM run")
        finish(local, "the local run")
    finally:
        stop_unfinished(slurm, local)
    run_id = re.search(r"SLURM run ID: (\S+)", slurm_out)[1]
    # Local rules (the target rule `all` at least) run in Snakemake's own process, not through sbatch.
    local_rules = set(re.findall(r"^localrule (\w+):", slurm_out, re.MULTILINE))
    assert "all" in local_rules
    planned = {rule: n for rule, n in planned.items() if rule not in local_rules | {"total"}}
    sacct = subprocess.run(
        [
            "sacct",
            "-X",
            "--parsable2",
            "--noheader",
            "--name",
            run_id,
            "--starttime",
            started.strftime("%Y-%m-%dT%H:%M:%S"),
            "--format",
            "JobIDRaw,Comment,Partition,AllocTRES,Timelimit,State",
        ],
        capture_output=True,
        text=True,
        check=True,
        env=slurm_env,
    ).stdout
    jobs = pd.DataFrame(
        [line.split("|") for line in sacct.splitlines() if line],
        columns=["job_id", "comment", "partition", "alloc_tres", "timelimit", "state"],
    )
    return SimpleNamespace(slurm_dir=slurm_dir, local_dir=local_dir, planned=planned, jobs=jobs)


GROUP_COMMENT = "rule_students_train_student"


def rule_of(comment: str) -> str:
    """The rule a job ran, from the comment the plugin gives it (rule_<rule>[_wildcards_<values>])."""
    return re.fullmatch(r"rule_(\w+?)(?:_wildcards_.*)?", comment)[1]


def gres_gpus(alloc_tres: str) -> int:
    found = re.search(r"gres/gpu(?::\w+)?=(\d+)", alloc_tres)
    return int(found[1]) if found else 0


def acquisitions(log: Path) -> list[dict]:
    return [r for r in map(parse_record, log.read_text().splitlines()) if r and r["event"] == "acquire"]


def lease_intervals(workdir: Path, rule: str) -> list[dict]:
    """One entry per lease in the rule's logs: SLURM job, devices, and the time it held them."""
    leases = []
    for log in sorted((workdir / "logs" / rule).rglob("*.log")):
        records = [r for r in map(parse_record, log.read_text().splitlines()) if r]
        for acquire in (r for r in records if r["event"] == "acquire"):
            release = next(r for r in records if r["event"] == "release" and r["lease"] == acquire["lease"])
            leases.append(
                dict(
                    job=acquire["slurm_job_id"],
                    devices=set(acquire["devices"]),
                    start=acquire["time"],
                    end=release["time"],
                    log=log,
                )
            )
    return leases


def test_every_job_went_through_sbatch(runs):
    jobs = runs.jobs
    assert (jobs["state"] == "COMPLETED").all(), jobs.to_string()
    grouped = jobs["comment"] == GROUP_COMMENT
    submitted = Counter(rule_of(c) for c in jobs.loc[~grouped, "comment"])
    # Every job the dry run planned for SLURM, the grouped students in group jobs.
    assert submitted == {rule: n for rule, n in runs.planned.items() if rule != "train_student"}
    assert grouped.sum() == -(-runs.planned["train_student"] // STUDENTS_PER_GROUP)


def test_gpu_jobs_get_gres_gpus_on_the_gpu_partition(runs):
    for job in runs.jobs.itertuples():
        gpu_job = job.comment == GROUP_COMMENT or rule_of(job.comment) in GPU_RULES
        assert (gres_gpus(job.alloc_tres) > 0) == gpu_job, job
        assert job.partition == ("gpu" if gpu_job else "cpu"), job


def test_each_gpu_job_leased_a_gpu_that_slurm_granted_it(runs):
    granted = {job.job_id: gres_gpus(job.alloc_tres) for job in runs.jobs.itertuples()}
    for rule in GPU_RULES:
        logs = sorted((runs.slurm_dir / "logs" / rule).rglob("*.log"))
        assert len(logs) == runs.planned[rule]
        for log in logs:
            (lease,) = acquisitions(log)
            # Under SLURM a job leases only among CUDA_VISIBLE_DEVICES, which SLURM sets from the job's gres
            # (without it the lease fails), so a lease inside a job with gres/gpu proves both.
            assert granted.get(lease["slurm_job_id"], 0) >= len(lease["devices"]) == 1, (log, lease)


def test_grouped_students_share_allocations_each_leasing_its_own_gpu(runs):
    groups = runs.jobs[runs.jobs["comment"] == GROUP_COMMENT]
    for group in groups.itertuples():
        assert gres_gpus(group.alloc_tres) == GPUS_PER_GROUP
        # One student per layer: a group's runtime is the sum over its layers.
        assert group.timelimit == str(timedelta(minutes=STUDENTS_PER_GROUP * STRONG_RUNTIME_MIN)).zfill(8)

    leases = lease_intervals(runs.slurm_dir, "train_student")
    assert Counter(lease["job"] for lease in leases) == {job: STUDENTS_PER_GROUP for job in groups["job_id"]}
    assert all(len(lease["devices"]) == 1 for lease in leases)


def test_gpu_jobs_running_at_once_hold_different_gpus(runs):
    leases = [lease for rule in sorted(GPU_RULES) for lease in lease_intervals(runs.slurm_dir, rule)]
    overlapping = [
        (a, b) for i, a in enumerate(leases) for b in leases[i + 1 :] if a["start"] < b["end"] and b["start"] < a["end"]
    ]
    # The ceiling and the activations need the same inputs: they are submitted together and run side by side.
    assert overlapping, "no two GPU jobs ran at once"
    for a, b in overlapping:
        assert not a["devices"] & b["devices"], f"{a['log']} and {b['log']} held the same GPU at once"


def test_summary_equals_the_local_runs(runs):
    keys = ["task", "weak", "strong", "intervention", "seed"]
    slurm, local = (
        pd.read_csv(d / "results" / "summary.csv").sort_values(keys).reset_index(drop=True)
        for d in (runs.slurm_dir, runs.local_dir)
    )
    assert len(slurm) == len(local) > 0
    pd.testing.assert_frame_equal(slurm, local, check_exact=True)


def slurm_cli(*args: str, env: dict) -> str:
    return subprocess.run(args, capture_output=True, text=True, check=True, env=env).stdout


def wait_until_requeued(job_id: str, env: dict, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while slurm_cli("squeue", "-h", "-j", job_id, "-o", "%T", env=env).strip() != "PENDING":
        assert time.monotonic() < deadline, f"job {job_id} was not preempted and requeued within {timeout_s} s"
        time.sleep(0.2)


def test_preempted_training_job_is_requeued_and_resumes_from_its_checkpoint(slurm_conf, tmp_path):
    """A job on the higher-tier partition preempts a running ceiling; SLURM requeues it, Snakemake waits for
    it, and the job resumes from its checkpoint and ends exactly as an uninterrupted local run."""
    slurm_dir, local_dir = tmp_path / "slurm-run", tmp_path / "local-run"
    slurm_dir.mkdir()
    local_dir.mkdir()
    slurm_env, local_env = environments(slurm_conf, local_dir)
    configs = {}
    for workdir in (slurm_dir, local_dir):
        configs[workdir] = long_ceiling_config()
        configs[workdir]["models"]["tiny_strong"].update(gpus=1, runtime=STRONG_RUNTIME_MIN)
    target = f"{LONG_CEILING}/test.parquet"

    run = launch(slurm_dir, configs[slurm_dir], ["--workflow-profile", str(PROFILE), *THREADS, target], slurm_env)
    local = launch(local_dir, configs[local_dir], ["--cores", "2", target], local_env)
    try:
        wait_for_file(slurm_dir / LONG_CEILING / "checkpoint" / CHECKPOINT_FILE, run)
        (job_id,) = [
            line.split("|")[0]
            for line in slurm_cli("squeue", "-h", "-o", "%i|%k", env=slurm_env).splitlines()
            if line.split("|")[1].startswith("rule_train_ceiling")
        ]
        # All of the node: SLURM must take it from the ceiling's job, and the preemption mode requeues that job.
        slurm_cli(
            "sbatch",
            "--partition",
            "urgent",
            "--exclusive",
            "--output",
            "/dev/null",
            "--wrap",
            "sleep 1",
            env=slurm_env,
        )
        wait_until_requeued(job_id, slurm_env)
        # SLURM holds a requeued job back for two minutes (its begin time); release it at once to save time.
        slurm_cli("scontrol", "update", f"JobId={job_id}", "StartTime=now", env=slurm_env)
        finish(run, "the SLURM run")
        finish(local, "the local run")
    finally:
        stop_unfinished(run, local)

    # Every start of the job is a record of its own: one preempted, then the one that completed.
    states = slurm_cli(
        "sacct", "-j", job_id, "--duplicates", "-X", "--parsable2", "--noheader", "--format", "State", env=slurm_env
    ).split()
    assert states[-1] == "COMPLETED" and "PREEMPTED" in states[:-1], states
    info = json.loads((slurm_dir / LONG_CEILING / "info.json").read_text())
    assert 0 < info["resumed_from_step"] < LONG_CEILING_STEPS
    assert not (slurm_dir / LONG_CEILING / "checkpoint").exists()
    reference = json.loads((local_dir / LONG_CEILING / "info.json").read_text())
    assert reference["resumed_from_step"] == 0 and info["history"] == reference["history"]
    pd.testing.assert_frame_equal(
        pd.read_parquet(slurm_dir / target), pd.read_parquet(local_dir / target), check_exact=True
    )


def test_jobs_no_node_can_run_stop_the_run_before_anything_is_submitted(slurm_conf, tmp_path):
    """With --cores above the test node's 16 CPUs every job would ask --cpus-per-task beyond any node and
    stay PENDING (Reason=PartitionConfig) for ever: the run must stop at once and say what to change."""
    slurm_env, _ = environments(slurm_conf, tmp_path)
    proc = launch(tmp_path, tiny_config(), ["--workflow-profile", str(PROFILE), "--cores", "32"], slurm_env)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode != 0, out[-5000:]
    assert "SLURM would keep these jobs pending for ever" in out, out[-5000:]
    assert re.search(
        r"rule train_weak asks for 32 CPUs per task .* no node of any partition has more than 16: "
        r"lower `cores` in the profile or pass --cores 16",
        out,
    ), out[-5000:]
    assert "has been submitted with SLURM jobid" not in out and not (tmp_path / "results").exists()


def slurm_state(job_id: str, env: dict) -> str:
    return slurm_cli("sacct", "-j", job_id, "-X", "--parsable2", "--noheader", "--format", "State", env=env).strip()


def running_ceiling(workdir: Path, run: subprocess.Popen, env: dict) -> str:
    """The SLURM job id of the long ceiling, once it has written its first checkpoint (so it is running)."""
    wait_for_file(workdir / LONG_CEILING / "checkpoint" / CHECKPOINT_FILE, run)
    (job_id,) = [
        line.split("|")[0]
        for line in slurm_cli("squeue", "-h", "-o", "%i|%k", env=env).splitlines()
        if line.split("|")[1].startswith("rule_train_ceiling")
    ]
    return job_id


def test_sigterm_lets_the_running_job_finish_before_snakemake_exits(slurm_conf, tmp_path):
    """SIGTERM (profiles/README.md): Snakemake submits nothing more, stays while its job runs, and exits
    once the job has finished; the job is not cancelled."""
    slurm_env, _ = environments(slurm_conf, tmp_path)
    config = long_ceiling_config()
    config["models"]["tiny_strong"].update(gpus=1, runtime=STRONG_RUNTIME_MIN)
    run = launch(
        tmp_path, config, ["--workflow-profile", str(PROFILE), *THREADS, f"{LONG_CEILING}/test.parquet"], slurm_env
    )
    try:
        job_id = running_ceiling(tmp_path, run, slurm_env)
        run.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while (state := slurm_state(job_id, slurm_env)) in ("RUNNING", "COMPLETING"):
            assert run.poll() is None, "Snakemake exited on SIGTERM while its job was still running"
            assert time.monotonic() < deadline, "the job did not finish"
            time.sleep(0.5)
        out, _ = run.communicate(timeout=300)
    finally:
        stop_unfinished(run)
    assert state == "COMPLETED", out[-5000:]
    assert (tmp_path / LONG_CEILING / "test.parquet").exists()


def test_sigint_cancels_the_running_job_and_a_rerun_resumes_it(slurm_conf, tmp_path):
    """Ctrl-C (SIGINT) makes Snakemake scancel its jobs and exit; the same command again resumes the
    cancelled training from its checkpoint."""
    slurm_env, _ = environments(slurm_conf, tmp_path)
    config = long_ceiling_config()
    config["models"]["tiny_strong"].update(gpus=1, runtime=STRONG_RUNTIME_MIN)
    args = ["--workflow-profile", str(PROFILE), *THREADS, f"{LONG_CEILING}/test.parquet"]
    run = launch(tmp_path, config, args, slurm_env)
    try:
        job_id = running_ceiling(tmp_path, run, slurm_env)
        run.send_signal(signal.SIGINT)
        out, _ = run.communicate(timeout=120)
    finally:
        stop_unfinished(run)
    assert run.returncode != 0, out[-5000:]
    assert slurm_state(job_id, slurm_env).startswith("CANCELLED"), out[-5000:]
    assert slurm_cli("squeue", "-h", "-j", job_id, env=slurm_env).strip() == ""

    finish(launch(tmp_path, config, args, slurm_env), "the rerun")
    info = json.loads((tmp_path / LONG_CEILING / "info.json").read_text())
    assert 0 < info["resumed_from_step"] < LONG_CEILING_STEPS
