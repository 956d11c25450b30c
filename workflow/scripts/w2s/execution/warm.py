"""Warm start: rule scripts forked from a worker that has already imported torch, transformers and the w2s
stages, instead of each job importing them afresh.

A job's Python process spends most of its start-up importing (12-13 s on a GPU host,
benchmarks/results/job_startup.md), and a sweep of short jobs pays it once per job. With `warm_start`, the
rule script's process (the client, started by Snakemake) hands its script to a worker of this machine over
a Unix socket and waits. The worker forks a child that takes the client's working directory, environment,
standard streams and argv, runs the script from its first line, and exits; the client exits with the
child's status. Each job still has a process of its own, so its memory, CUDA context, GPU lease and
crash are its own, as before; only the imports are shared. CUDA is never initialised in the worker, which
forking would make unusable in the children.

- One worker per (Python, w2s source files, installed libraries, environment, SLURM job): `fingerprint`.
  Jobs of one thread count share a worker (Snakemake sets OMP_NUM_THREADS and its kin to a job's threads);
  under SLURM only jobs of one allocation do (a job group's).
  Edited code or a changed environment gets a new worker; the old one exits after `IDLE_SECONDS` without a
  job.
- A client that dies (Snakemake kills the job, or SIGKILL) takes its child with it: the worker kills the
  child's process group when the client's connection closes. SIGTERM or SIGINT to the client are passed on
  to the child, and the client waits for it to end. A worker that dies takes its children with it
  (PR_SET_PDEATHSIG), and their clients fail.
- A job never waits for a worker: if none is ready for its environment, it imports its own libraries, as
  without warm start, and starts one (unless one is already starting) for the jobs that come after it. So
  warm start is never slower than a fresh process, and the first jobs of a run are fresh processes.

    python -m w2s.execution.warm serve --socket PATH [--idle-seconds S]   (what a client starts)
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import fcntl
import hashlib
import importlib
import importlib.util
import json
import logging
import os
import pkgutil
import random
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from w2s.clock import JOB_START_ENV, process_start_time

log = logging.getLogger(__name__)

DIR_ENV = "W2S_WARM_DIR"
IDLE_ENV = "W2S_WARM_IDLE_SECONDS"
IDLE_SECONDS = 180
# A worker imports under the environment it was started in, and libraries read some variables when they are
# imported (tqdm's TQDM_*, the hub's HF_HUB_OFFLINE, the BLAS libraries' thread counts, which Snakemake sets
# to each job's threads), so a worker serves only clients whose environment equals its own, but for these:
# read when CUDA starts or by the job's own code, both in the child, after it took the client's environment.
AFTER_FORK_ENV = ("CUDA_", "NVIDIA_", "ROCR_", "GPU_DEVICE_ORDINAL", "SLURM_", "W2S_", "_", "OLDPWD", "PWD", "SHLVL")
LIBRARIES = ("torch", "transformers", "accelerate", "peft", "datasets", "pandas", "numpy", "snakemake", "matplotlib")
PACKAGE = Path(__file__).resolve().parents[1]

_in_worker = False


def in_worker() -> bool:
    """Whether this process is a job forked from a warm worker."""
    return _in_worker


def runtime_dir() -> Path:
    """Where this user's workers keep their sockets: node-local, so that each machine has its own."""
    configured = os.environ.get(DIR_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    return Path(base) / f"w2s-warm-{os.getuid()}"


def fingerprint(env: dict[str, str]) -> str:
    """What a worker's imports depend on: a client may use a worker only if this is equal for both."""
    parts: list[Any] = [sys.executable, sys.version, str(PACKAGE)]
    for path in sorted(PACKAGE.rglob("*.py")):
        stat = path.stat()
        parts.append((str(path.relative_to(PACKAGE)), stat.st_size, stat.st_mtime_ns))
    for name in LIBRARIES:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        parts.append((name, origin, os.stat(origin).st_mtime_ns if origin and os.path.exists(origin) else None))
    parts.append(sorted((k, v) for k, v in env.items() if not k.startswith(AFTER_FORK_ENV)))
    # A worker, and the children it forks, live in the SLURM job that started it (its cgroup: CPUs, memory,
    # devices): a job of another allocation must not run its work there.
    parts.append(env.get("SLURM_JOB_ID"))
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def socket_path(env: dict[str, str]) -> Path:
    return runtime_dir() / f"{fingerprint(env)}.sock"


# Messages are length-prefixed JSON; the request carries the client's stdin, stdout and stderr as
# descriptors (SCM_RIGHTS), so the child writes where the client would have.
def _send(sock: socket.socket, message: dict[str, Any], fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    header = struct.pack("!I", len(data))
    if fds:
        # The descriptors ride on the 4-byte header, which one sendmsg always sends whole.
        socket.send_fds(sock, [header], fds)
    else:
        sock.sendall(header)
    sock.sendall(data)


def _recv_exact(sock: socket.socket, n: int, first: bytes = b"") -> bytes:
    data = first
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("the connection closed in the middle of a message")
        data += chunk
    return data


def _recv(sock: socket.socket) -> dict[str, Any] | None:
    """The next message, or None when the peer closed the connection."""
    head = sock.recv(4)
    if not head:
        return None
    (size,) = struct.unpack("!I", _recv_exact(sock, 4, head))
    return json.loads(_recv_exact(sock, size))


def _recv_request(sock: socket.socket) -> tuple[dict[str, Any], list[int]]:
    head, fds, _, _ = socket.recv_fds(sock, 4, 3)
    (size,) = struct.unpack("!I", _recv_exact(sock, 4, head))
    return json.loads(_recv_exact(sock, size)), fds


# ---------------------------------------------------------------------------------------------- client


def hand_off(script: str, argv: list[str]) -> int | None:
    """Run `script` in a child of this machine's warm worker, as this process would have run it; return its
    exit status. Return None, for the caller to run the script itself, if no worker is ready: then one is
    started (unless one is already starting) for the jobs that come after."""
    started = process_start_time()
    env = dict(os.environ)
    path = socket_path(env)
    try:
        sock = _connect(path)
    except OSError:
        _start_worker_unless_alive(path, env)
        return None
    request = {
        "script": os.path.abspath(script),
        "argv": argv,
        "cwd": os.getcwd(),
        "env": {**env, JOB_START_ENV: repr(started)},
        "umask": _umask(),
    }
    with sock:
        try:
            _send(sock, request, [_open_or_null(fd) for fd in (0, 1, 2)])
            # A worker that exits idle as this request arrives closes the connection unanswered.
            if _recv(sock) is None:
                return None
        except OSError:
            return None
        return _wait_for_child(sock)


def _open_or_null(fd: int) -> int:
    try:
        os.fstat(fd)
        return fd
    except OSError:
        return os.open(os.devnull, os.O_RDWR)


def _wait_for_child(sock: socket.socket) -> int:
    def forward(signum: int, _frame: Any) -> None:
        # Passed on and waited for, so that Snakemake sees the job end only once its child has ended.
        try:
            _send(sock, {"signal": signum})
        except OSError:
            pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        while True:
            try:
                message = _recv(sock)
            except ConnectionError:
                message = None
            if message is None:
                print("warm start: the worker running this job died; the job did not finish", file=sys.stderr)
                return 1
            if "status" in message:
                return int(message["status"])
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(str(path))
    except OSError:
        sock.close()
        raise
    return sock


def _start_worker_unless_alive(path: Path, env: dict[str, str]) -> None:
    """Start a worker for `path` unless one is alive: a worker holds the lock from its start to its exit, so
    a held lock is one still importing. A job never waits for it."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return
    except OSError as err:
        log.warning("warm start: cannot start a worker in %s (%s)", path.parent, err)
        return
    _start_worker(path, env)


def _start_worker(path: Path, env: dict[str, str]) -> None:
    paths = [str(PACKAGE.parent), env.get("PYTHONPATH")]
    worker_env = {**env, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    idle = env.get(IDLE_ENV, str(IDLE_SECONDS))
    with open(path.with_suffix(".log"), "a") as out:
        subprocess.Popen(
            [sys.executable, "-m", "w2s.execution.warm", "serve", "--socket", str(path), "--idle-seconds", idle],
            cwd=path.parent,
            env=worker_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# ---------------------------------------------------------------------------------------------- worker


def preload() -> list[str]:
    """Import everything a rule script may import, except what fails (e.g. an optional library missing);
    return the modules that failed."""
    import snakemake.io  # noqa: F401  (what the script's preamble unpickles)
    import snakemake.iocontainers  # noqa: F401
    import snakemake.logging  # noqa: F401

    import w2s

    failed = []
    for module in pkgutil.walk_packages(w2s.__path__, "w2s."):
        try:
            importlib.import_module(module.name)
        except Exception as err:  # noqa: BLE001 (an optional module; the job that needs it will say why)
            failed.append(f"{module.name}: {err}")
    return failed


def serve(path: Path, idle_seconds: float) -> None:
    """Import, listen on `path`, fork a child per request, and exit after `idle_seconds` without a job."""
    lock = open(path.with_suffix(".lock"), "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.info("another worker serves %s", path)
        return
    began = time.monotonic()
    failed = preload()
    log.info("imported in %.1f s%s", time.monotonic() - began, f"; not imported: {failed}" if failed else "")

    path.unlink(missing_ok=True)  # a dead worker's socket: with the lock, no live worker owns it
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    children: dict[int, socket.socket] = {}
    gone: set[int] = set()  # children whose client hung up: their connection is no longer watched
    last_active = time.monotonic()
    log.info("worker %d listening on %s", os.getpid(), path)
    try:
        while children or time.monotonic() - last_active < idle_seconds:
            for key, _ in selector.select(timeout=0.05):
                if key.fileobj is listener:
                    conn, _ = listener.accept()
                    pid = _fork_job(conn, [listener, lock, *children.values()], selector)
                    if pid is not None:
                        children[pid] = conn
                        selector.register(conn, selectors.EVENT_READ, pid)
                elif not _on_client_message(key.fileobj, key.data):
                    selector.unregister(key.fileobj)
                    gone.add(key.data)
            for pid, status in _reaped(children):
                conn = children.pop(pid)
                if pid in gone:
                    gone.discard(pid)
                else:
                    selector.unregister(conn)
                try:
                    _send(conn, {"status": status})
                except OSError:
                    pass
                conn.close()
                last_active = time.monotonic()
    finally:
        listener.close()
        path.unlink(missing_ok=True)
        lock.close()
        log.info("worker %d exits after %.0f s without a job", os.getpid(), idle_seconds)


def _on_client_message(conn: socket.socket, pid: int) -> bool:
    """Pass a client's signal on to its child; return False if the client hung up."""
    try:
        message = _recv(conn)
    except (ConnectionError, OSError):
        message = None
    # A client gone without a word was killed: so is its job, as it would be were it the job's process.
    signum = signal.SIGKILL if message is None else int(message["signal"])
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass
    return message is not None


def _reaped(children: dict[int, socket.socket]) -> list[tuple[int, int]]:
    ended = []
    for pid in list(children):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            ended.append((pid, code if code >= 0 else 128 - code))
    return ended


def _fork_job(conn: socket.socket, inherited: list[Any], selector: selectors.BaseSelector) -> int | None:
    try:
        # A client sends its request as soon as it connects; one that stalls must not stall the worker.
        conn.settimeout(10)
        request, fds = _recv_request(conn)
        conn.settimeout(None)
    except (ConnectionError, OSError, ValueError) as err:
        log.warning("dropped a request: %s", err)
        conn.close()
        return None
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        # The child keeps none of the worker's sockets (a client must see EOF when the worker dies) nor its lock.
        selector.close()
        for held in (conn, *inherited):
            held.close()
        _run_job(request, fds)
    for fd in fds:
        os.close(fd)
    try:
        _send(conn, {"pid": pid})
    except OSError:
        pass  # the client is gone; the next pass of the loop kills the child
    return pid


def _run_job(request: dict[str, Any], fds: list[int]) -> None:
    """In the forked child: become the client's job, run its script, and exit with its status."""
    global _in_worker
    status = 1
    try:
        os.setsid()
        _die_with_parent()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        sys.stdout.reconfigure(line_buffering=os.isatty(1))
        sys.stderr.reconfigure(line_buffering=True)
        os.chdir(request["cwd"])
        os.umask(request["umask"])
        os.environ.clear()
        os.environ.update(request["env"])
        script = request["script"]
        sys.argv = list(request["argv"])
        # As `python script.py` would have it: the script's folder first, then the worker's path without
        # `python -m`'s working directory.
        sys.path[:] = [os.path.dirname(script), *sys.path[1:]]
        tempfile.tempdir = None
        # A fresh process draws these from the OS; forked children would otherwise share the worker's.
        random.seed()
        _in_worker = True
        status = _run_script(script)
    except BaseException:  # noqa: BLE001 (becoming the job failed: say why, where the job's stderr goes)
        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(status)


def _run_script(script: str) -> int:
    import atexit
    import runpy

    try:
        runpy.run_path(script, run_name="__main__")
        status = 0
    except SystemExit as end:
        if end.code is None or isinstance(end.code, int):
            status = end.code or 0
        else:
            print(end.code, file=sys.stderr)
            status = 1
    except BaseException as err:  # noqa: BLE001 (as the interpreter does for an uncaught exception)
        traceback.print_exception(type(err), err, _from_script(err.__traceback__, script))
        status = 1
    # What the interpreter runs at exit (atexit handlers, logging's flush), which os._exit skips.
    atexit._run_exitfuncs()
    return status


def _from_script(tb: Any, script: str) -> Any:
    """The traceback from the script's own frame on, as `python script.py` would print it."""
    frame = tb
    while frame is not None and frame.tb_frame.f_code.co_filename != script:
        frame = frame.tb_next
    return frame or tb


def _die_with_parent() -> None:
    """SIGKILL this child when the worker dies (Linux), so that no job outlives the worker that serves its
    client."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return
    PR_SET_PDEATHSIG = 1
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        log.warning("prctl(PR_SET_PDEATHSIG) failed: %s", errno.errorcode.get(ctypes.get_errno()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m w2s.execution.warm", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    serve_parser = commands.add_parser("serve", help="run a worker (clients start one when they need it)")
    serve_parser.add_argument("--socket", required=True, type=Path)
    serve_parser.add_argument("--idle-seconds", type=float, default=IDLE_SECONDS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s warm worker: %(message)s", stream=sys.stderr)
    serve(args.socket, args.idle_seconds)


if __name__ == "__main__":
    # The worker's state must live in the module that rule scripts import, not in a second copy named __main__.
    importlib.import_module("w2s.execution.warm").main()
