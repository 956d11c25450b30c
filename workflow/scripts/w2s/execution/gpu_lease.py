"""Lease specific GPUs to one job.

Snakemake only counts a `gpu` resource and never says *which* devices a job may use (snakemake issue
#281), so two jobs started together would both land on GPU 0. Each GPU job therefore takes an exclusive
`flock` on one lock file per device it uses. The kernel drops a flock when its last descriptor closes, so
a job that dies, even by SIGKILL, frees its GPUs with no cleanup step and no stale-lock heuristics.

In a Python rule script:      with lease_gpus(snakemake.resources.gpu): train(...)
In a shell rule:              python -m w2s.execution.gpu_lease {resources.gpu} -- accelerate launch ...

Every lease is logged as an auditable record, so that a run's logs prove which physical GPU each job held
and when: the acquisition line ("leased GPU(s) ...") and, when a `lease_gpus` block exits, a release line
each end in `lease record {JSON}` (see `format_record` and `parse_record`). The acquisition record is
written after the locks are taken and the release record before they are dropped, so the interval between
them lies inside the time the job held its devices exclusively. The command-line form execs its command,
which then holds the lease until it exits; nothing is left to write a release line, so its acquisition
record says `"ends": "process-exit"` and readers take the end of the job's log as the end.

Jobs per GPU. By default a device is one slot: one job at a time. With k jobs per GPU (config key
`jobs_per_gpu`, which `start_rule` passes on as $W2S_JOBS_PER_GPU; Snakemake then runs with
`--resources gpu=N*k`), a device has k slot locks and a job leases one slot on each of its n devices, on
the devices with the fewest held slots: small jobs share a GPU by memory, and one job's start-up (imports,
model load, tokenization) overlaps another's kernels. Every job on a node must use the same k.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_ENV_KEYS = ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER")
RECORD_MARKER = "lease record "
JOBS_PER_GPU_ENV = "W2S_JOBS_PER_GPU"


def physical_gpus() -> list[tuple[str, str]]:
    """(index, UUID) of every GPU the driver reports, in nvidia-smi's PCI bus order.

    Asks nvidia-smi rather than CUDA: initialising CUDA here, before CUDA_VISIBLE_DEVICES is final, would
    bind this process to the wrong devices.
    """
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=index,uuid", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        # nvidia-smi also exits non-zero when a driver is installed but no GPU is present.
        log.warning("nvidia-smi failed (%s); treating this machine as having no GPUs", err)
        return []
    gpus = []
    for line in out.splitlines():
        index, _, uuid = line.partition(",")
        if index.strip():
            gpus.append((index.strip(), uuid.strip()))
    return gpus


def _parse_visible(value: str) -> list[str]:
    ids: list[str] = []
    for item in (part.strip() for part in value.split(",")):
        # CUDA hides every device listed after a negative index ("0,2,-1,1" means 0 and 2).
        if item.startswith("-"):
            break
        if item and item not in ids:
            ids.append(item)
    return ids


def _candidates() -> tuple[list[str], str]:
    """Device ids this job may lease, and where they came from (for error messages)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return _parse_visible(visible), f"CUDA_VISIBLE_DEVICES={visible!r}"
    job = os.environ.get("SLURM_JOB_ID")
    if job is not None:
        # SLURM exports CUDA_VISIBLE_DEVICES whenever it grants GPUs; without it this job was granted
        # none, and the node's other GPUs belong to other jobs.
        return [], f"SLURM job {job} granted no GPUs (CUDA_VISIBLE_DEVICES unset)"
    return [index for index, _ in physical_gpus()], "nvidia-smi"


def resolve_lock_dir(lock_dir: str | os.PathLike | None = None) -> Path:
    """Where the lock files live: lock_dir, else $W2S_GPU_LOCK_DIR, else a per-user temp dir.

    Must be node-local: the ids it names are this node's devices.
    """
    base = lock_dir or os.environ.get("W2S_GPU_LOCK_DIR")
    path = Path(base) if base else Path(tempfile.gettempdir()) / f"w2s-gpu-locks-{os.getuid()}"
    job = os.environ.get("SLURM_JOB_ID")
    if job is not None:
        # Two allocations sharing a node may both number their GPUs from 0.
        path = path / f"slurm-{job}"
    return path


def jobs_per_gpu_from_env() -> int:
    """The slots per device: $W2S_JOBS_PER_GPU, else 1."""
    value = os.environ.get(JOBS_PER_GPU_ENV, "1")
    try:
        k = int(value)
    except ValueError:
        k = 0
    if k < 1:
        raise ValueError(
            f"{JOBS_PER_GPU_ENV}={value!r}: give a whole number >= 1 of jobs per GPU (config jobs_per_gpu)"
        )
    return k


def _lock_file(directory: Path, device: str, slot: int = 0) -> Path:
    # Slot 0 keeps the one-job-per-GPU name, so that k = 1 uses exactly the files it always did.
    suffix = ".lock" if slot == 0 else f".slot{slot}.lock"
    return directory / (re.sub(r"[^A-Za-z0-9._-]", "_", device) + suffix)


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    # The holder's pid lets a person (and the timeout message) find the job that blocks a queue.
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
    return fd


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown holder"
    except OSError:
        return "unknown holder"


def _holders(directory: Path, device: str, slots: int) -> str:
    return "; ".join(_holder(_lock_file(directory, device, slot)) for slot in range(slots))


def _is_held(path: Path) -> bool:
    """Whether another descriptor holds this lock; takes and drops it at once if not, writing nothing."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


@contextmanager
def _placement(directory: Path) -> Iterator[None]:
    """One job at a time counts the devices' held slots and takes its own, so that two jobs starting
    together see each other's choice, and no probe of a slot makes a third job think it held."""
    fd = os.open(directory / "placement.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _least_busy_first(candidates: list[str], directory: Path, slots: int) -> list[str]:
    held = {d: sum(_is_held(_lock_file(directory, d, slot)) for slot in range(slots)) for d in candidates}
    # Stable: among equally busy devices the visible order decides, as with one slot.
    return sorted(candidates, key=held.__getitem__)


def _take(n: int, devices: list[str], directory: Path, slots: int) -> dict[str, tuple[int, int]]:
    """A free slot on each of up to n devices, tried in order: device -> (slot, locked descriptor)."""
    held: dict[str, tuple[int, int]] = {}
    for device in devices:
        for slot in range(slots):
            fd = _try_lock(_lock_file(directory, device, slot))
            if fd is not None:
                held[device] = (slot, fd)
                break
        if len(held) == n:
            break
    return held


def _try_acquire(n: int, candidates: list[str], directory: Path, slots: int) -> dict[str, tuple[int, int]]:
    if slots == 1:
        return _take(n, candidates, directory, 1)
    with _placement(directory):
        return _take(n, _least_busy_first(candidates, directory, slots), directory, slots)


def _acquire(
    n: int, candidates: list[str], directory: Path, slots: int, timeout_s: float, poll_s: float
) -> dict[str, tuple[int, int]]:
    deadline = time.monotonic() + timeout_s
    waiting_logged = False
    while True:
        held = _try_acquire(n, candidates, directory, slots)
        if len(held) == n:
            return held
        # Holding a partial set while waiting could deadlock two jobs that each hold half of what both need.
        for _, fd in held.values():
            os.close(fd)
        busy = {d: _holders(directory, d, slots) for d in candidates if d not in held}
        if time.monotonic() >= deadline:
            raise TimeoutError(
                f"could not lease {n} GPU(s) among {candidates} within {timeout_s:g} s; "
                f"busy (pid host of last holder): {busy}; lock dir {directory}"
            )
        if not waiting_logged:
            log.info("waiting for %d GPU(s) among %s; busy: %s", n, candidates, busy)
            waiting_logged = True
        time.sleep(min(poll_s, max(deadline - time.monotonic(), 0.0)))


def _lease_fds(
    n: int,
    jobs_per_gpu: int | None,
    lock_dir: str | os.PathLike | None,
    timeout_s: float,
    poll_s: float,
    ends: str,
) -> tuple[dict[str, int], dict[str, Any]]:
    """Lock a slot on each of n devices and point CUDA_VISIBLE_DEVICES at them.

    Returns device id -> locked descriptor, and the lease's identity for its release record.
    """
    slots = jobs_per_gpu_from_env() if jobs_per_gpu is None else jobs_per_gpu
    if slots < 1:
        raise ValueError(f"jobs_per_gpu must be >= 1, got {slots}")
    candidates, source = _candidates()
    if n > len(candidates):
        raise ValueError(
            f"asked for {n} GPU(s) but only {len(candidates)} visible "
            f"({', '.join(candidates) or 'none'}; from {source})"
        )
    directory = resolve_lock_dir(lock_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    held = _acquire(n, candidates, directory, slots, timeout_s, poll_s)
    fds = {device: fd for device, (_, fd) in held.items()}
    try:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(fds)
        if source == "nvidia-smi":
            # The ids are nvidia-smi indices (PCI bus order); CUDA's default order may differ.
            os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        uuids = leased_gpu_uuids(fds)
        identity = _lease_identity(list(fds), uuids, [slot for slot, _ in held.values()], slots)
        # Other tools grep rule logs for the "leased GPU(s)" prefix: keep it first.
        log.info(
            "leased GPU(s) %s (lock dir %s)%s; %s",
            ",".join(fds),
            directory,
            "; UUIDs " + ", ".join(f"{d}={u}" for d, u in uuids.items()) if uuids else "",
            format_record({"event": "acquire", **identity, "time": _now(), "ends": ends}),
        )
    except BaseException:
        for fd in fds.values():
            os.close(fd)
        raise
    return fds, identity


def _now() -> str:
    # UTC with microseconds: records from different hosts and time zones must order correctly.
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _lease_identity(devices: list[str], uuids: dict[str, str], slots: list[int], jobs_per_gpu: int) -> dict[str, Any]:
    return {
        # Pairs an acquisition with its release when one log holds several leases (reruns append).
        "lease": uuid.uuid4().hex,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "devices": devices,
        "uuids": [uuids.get(d) for d in devices],
        # Which of its device's jobs_per_gpu slots the lease holds on each device: leases that overlap in
        # time may share a device, never a slot.
        "slots": slots,
        "jobs_per_gpu": jobs_per_gpu,
    }


def format_record(record: dict[str, Any]) -> str:
    """The machine-readable tail of a lease log line; `parse_record` reads it back."""
    return RECORD_MARKER + json.dumps(record, sort_keys=True)


def parse_record(line: str) -> dict[str, Any] | None:
    """The lease record in one log line (whatever the logging prefix), or None if it holds none.

    Its "time" is parsed to an aware datetime.
    """
    start = line.find(RECORD_MARKER)
    if start < 0:
        return None
    try:
        record = json.loads(line[start + len(RECORD_MARKER) :])
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict) or record.get("event") not in ("acquire", "release"):
        return None
    record["time"] = datetime.fromisoformat(record["time"])
    return record


def leased_gpu_uuids(ids: Iterable[str]) -> dict[str, str]:
    """Physical UUID of each device id, where nvidia-smi can tell (ids without a match are left out).

    Numeric ids are read as nvidia-smi indices, which holds when this module enumerated them; ids granted
    by a scheduler under a device cgroup may be renumbered, so inside a job the authoritative UUID is
    `torch.cuda.get_device_properties(i).uuid`.
    """
    ids = list(ids)
    by_index = dict(physical_gpus()) if any(not d.startswith(("GPU-", "MIG-")) for d in ids) else {}
    uuids = {}
    for device in ids:
        if device.startswith(("GPU-", "MIG-")):
            uuids[device] = device
        elif device in by_index:
            uuids[device] = by_index[device]
    return uuids


@contextmanager
def lease_gpus(
    n: int,
    *,
    jobs_per_gpu: int | None = None,
    lock_dir: str | os.PathLike | None = None,
    timeout_s: float = 3600.0,
    poll_s: float = 2.0,
) -> Iterator[list[str]]:
    """Hold n GPUs among this user's jobs on this node; yield their ids.

    Each device is shared by at most `jobs_per_gpu` jobs (None: $W2S_JOBS_PER_GPU, else 1, exclusive).

    Sets CUDA_VISIBLE_DEVICES to the leased ids (and to "" for n == 0, so a CPU job never touches a GPU);
    both it and CUDA_DEVICE_ORDER are restored on exit. Enter it before anything initialises CUDA. To hold
    the lease for a whole process, enter it and never exit: the kernel frees it when the process ends.
    Raises ValueError at once when fewer than n devices are visible, TimeoutError when they stay busy.
    """
    if n < 0:
        raise ValueError(f"cannot lease a negative number of GPUs ({n})")
    previous = {key: os.environ.get(key) for key in _ENV_KEYS}
    fds: dict[str, int] = {}
    identity: dict[str, Any] = {}
    outcome = "error"
    try:
        if n == 0:
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        else:
            fds, identity = _lease_fds(n, jobs_per_gpu, lock_dir, timeout_s, poll_s, ends="context-exit")
        yield list(fds)
        outcome = "ok"
    finally:
        if fds:
            _drain_cuda()
            # Written before the locks drop, so no other job can hold these devices at a logged time
            # inside this lease's interval.
            log.info(
                "released GPU(s) %s; %s",
                ",".join(fds),
                format_record({"event": "release", **identity, "time": _now(), "outcome": outcome}),
            )
        for fd in fds.values():
            os.close(fd)
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _drain_cuda() -> None:
    """Finish this process's queued GPU work and return its cached GPU memory before the lease ends.

    The CUDA context itself lives until the process exits, after the lease: the next job may start on the
    device while this one exits, so it should find the memory free. Torch is only consulted if the job
    already imported it and initialised CUDA: touching a device here would create a context on it.
    """
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return
    try:
        # The current device only: synchronising another one would create a context there.
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
    except Exception as err:  # noqa: BLE001 - a broken CUDA state must not keep the devices leased
        log.warning("could not drain CUDA before releasing the GPU lease: %s", err)


def main(argv: list[str] | None = None) -> None:
    """Run a command holding n GPUs, for shell rules: `python -m w2s.execution.gpu_lease N -- CMD ARGS...`."""
    parser = argparse.ArgumentParser(
        prog="python -m w2s.execution.gpu_lease",
        usage="%(prog)s [--jobs-per-gpu K] [--lock-dir DIR] [--timeout-s S] N -- CMD [ARGS...]",
        description=main.__doc__,
    )
    parser.add_argument("n", type=int, help="number of GPUs to lease")
    parser.add_argument(
        "--jobs-per-gpu", type=int, default=None, help="slots per device (default: $W2S_JOBS_PER_GPU or 1)"
    )
    parser.add_argument("--lock-dir", default=None)
    parser.add_argument("--timeout-s", type=float, default=3600.0)
    argv = sys.argv[1:] if argv is None else argv
    # Split by hand: argparse.REMAINDER would swallow this wrapper's own options placed after N.
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        parser.error("give the command after --")
    split = argv.index("--")
    args, command = parser.parse_args(argv[:split]), argv[split + 1 :]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.n < 0:
        parser.error("n must be >= 0")
    if args.n == 0:
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    else:
        # exec keeps inheritable descriptors and their flocks, so the command itself holds the lease and
        # frees it when it dies; there is no wrapper process left whose death could free it too early.
        fds, _ = _lease_fds(args.n, args.jobs_per_gpu, args.lock_dir, args.timeout_s, poll_s=2.0, ends="process-exit")
        for fd in fds.values():
            os.set_inheritable(fd, True)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
