"""Check from a run's logs that no two jobs held the same physical GPU (slot) at the same time.

    python benchmarks/gpu_lease_proof.py logs/ [--gpu-samples samples.csv] [--out report.md]

Reads the lease records that `w2s.execution.gpu_lease` writes into every GPU job's rule log (an acquisition line and,
for `lease_gpus` blocks, a release line), takes each lease's interval [acquired, released], and reports:
per job the rule and wildcards (from the log's path, logs/<rule>/<wildcards>.log), the devices and their
physical UUIDs, start and end; the most jobs and GPUs held at once; and every pair of jobs whose intervals
overlap while sharing a UUID and a slot on it (with `jobs_per_gpu: k`, up to k jobs share a GPU, each in
its own slot; a record without slots held slot 0, the only one). Exits 1 if there is such a pair (or, with
--gpu-samples, a process on a GPU it held no lease on at that time), 2 if the logs hold no lease at all (an
empty proof proves nothing).

A lease without a release record (the command-line wrapper, which execs its command, or a job that was
killed) is taken to end when its log was last written; the table marks those ends.

The records say what each job held. What the jobs really ran on can be checked too: --gpu-samples reads
lines `unix_time, pid, gpu_uuid` (nvidia-smi --query-compute-apps=pid,gpu_uuid sampled during the run,
each line prefixed with the time) and flags every process seen on a GPU that it had not leased by then.
A job leased k > 1 GPUs trains in k data-parallel worker processes that hold no lease of their own; a
process without a lease is accepted only while a multi-GPU lease covers the GPU it is seen on (nvidia-smi
gives no parent pid, so this checks where and when workers ran, not whose they were). It also counts the
moments a process was still seen on its GPU after its lease ended (see `classify_samples`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))

from w2s.execution.gpu_lease import parse_record  # noqa: E402


@dataclass(frozen=True)
class Lease:
    rule: str
    wildcards: str
    lease: str
    host: str
    pid: int
    slurm_job_id: str | None
    devices: tuple[str, ...]
    uuids: tuple[str | None, ...]
    start: datetime
    end: datetime
    end_from_log_mtime: bool
    slots: tuple[int, ...] = ()

    @property
    def gpus(self) -> frozenset[str]:
        """Physical identities: the UUID, or host and device id where nvidia-smi gave none."""
        return frozenset(u or f"{self.host}:{d}" for d, u in zip(self.devices, self.uuids))

    @property
    def gpu_slots(self) -> frozenset[tuple[str, int]]:
        """(physical GPU, slot) of every device held: what no two overlapping leases may share."""
        slots = self.slots or (0,) * len(self.devices)
        return frozenset((u or f"{self.host}:{d}", s) for d, u, s in zip(self.devices, self.uuids, slots))


def _rule_and_wildcards(log: Path, logs_dir: Path) -> tuple[str, str]:
    parts = log.relative_to(logs_dir).with_suffix("").parts
    if len(parts) == 1:
        return parts[0], ""
    return parts[0], "/".join(parts[1:])


def leases_in_log(log: Path, logs_dir: Path) -> list[Lease]:
    acquired: dict[str, dict] = {}
    released: dict[str, dict] = {}
    with open(log, errors="replace") as lines:
        for line in lines:
            record = parse_record(line)
            if record is not None:
                (acquired if record["event"] == "acquire" else released)[record["lease"]] = record
    mtime = datetime.fromtimestamp(os.stat(log).st_mtime, tz=timezone.utc)
    rule, wildcards = _rule_and_wildcards(log, logs_dir)
    leases = []
    for lease_id, record in acquired.items():
        end = released.get(lease_id)
        leases.append(
            Lease(
                rule=rule,
                wildcards=wildcards,
                lease=lease_id,
                host=record["host"],
                pid=record["pid"],
                slurm_job_id=record.get("slurm_job_id"),
                devices=tuple(record["devices"]),
                uuids=tuple(record["uuids"]),
                start=record["time"],
                end=end["time"] if end else max(mtime, record["time"]),
                end_from_log_mtime=end is None,
                slots=tuple(record.get("slots", ())),
            )
        )
    return leases


def read_leases(logs_dir: Path) -> list[Lease]:
    leases = [lease for log in sorted(logs_dir.rglob("*.log")) for lease in leases_in_log(log, logs_dir)]
    return sorted(leases, key=lambda lease: lease.start)


def overlaps(a: Lease, b: Lease) -> bool:
    # Half-open: a lease that starts exactly when another ends took the lock after it was dropped.
    return a.start < b.end and b.start < a.end


def conflicts(leases: list[Lease]) -> list[tuple[Lease, Lease, list[str]]]:
    """Every pair of leases whose intervals overlap and that share a slot of a physical GPU."""
    ordered = sorted(leases, key=lambda lease: lease.start)
    found = []
    for i, a in enumerate(ordered):
        for b in ordered[i + 1 :]:
            if b.start >= a.end:
                # Sorted by start: no later lease can overlap a either.
                break
            shared = sorted({gpu for gpu, _ in a.gpu_slots & b.gpu_slots})
            if shared:
                found.append((a, b, shared))
    return found


@dataclass(frozen=True)
class Peak:
    jobs: int
    gpus: int
    at: datetime | None


def peak_concurrency(leases: list[Lease]) -> tuple[Peak, Peak]:
    """The most leases held at once, and the most GPUs held at once (each with when it was first reached).

    A GPU shared by several jobs (jobs_per_gpu > 1) counts once."""
    events = [(lease.start, 1, lease) for lease in leases] + [(lease.end, -1, lease) for lease in leases]
    # At equal times releases go first: a device handed over at one instant is not held twice.
    events.sort(key=lambda event: (event[0], event[1]))
    jobs = 0
    holders: Counter[str] = Counter()
    most_jobs, most_gpus = Peak(0, 0, None), Peak(0, 0, None)
    for time, job_delta, lease in events:
        jobs += job_delta
        holders.update({gpu: job_delta for gpu in lease.gpus})
        gpus = sum(1 for count in holders.values() if count > 0)
        if jobs > most_jobs.jobs:
            most_jobs = Peak(jobs, gpus, time)
        if gpus > most_gpus.gpus:
            most_gpus = Peak(jobs, gpus, time)
    return most_jobs, most_gpus


@dataclass(frozen=True)
class GpuSample:
    time: datetime
    pid: int
    uuid: str


def read_gpu_samples(path: Path) -> list[GpuSample]:
    samples = []
    for line in path.read_text().splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 3 or not fields[1].isdigit():
            # nvidia-smi prints a notice instead of rows when no process uses a GPU.
            continue
        when = datetime.fromtimestamp(float(fields[0]), tz=timezone.utc)
        samples.append(GpuSample(when, int(fields[1]), fields[2]))
    return samples


@dataclass(frozen=True)
class Lingering:
    sample: GpuSample
    seconds_after_release: float
    other_holder: Lease | None


@dataclass(frozen=True)
class Classified:
    unleased: list[GpuSample]
    lingering: list[Lingering]
    workers: list[GpuSample]


def classify_samples(leases: list[Lease], samples: list[GpuSample]) -> Classified:
    """Sort out the samples that their own process's lease does not cover at their time.

    Workers: a process that holds no lease, seen on a GPU while a lease of several GPUs covers that GPU
    (a data-parallel worker of that job). Unleased: any other process on a GPU it never leased, or before its
    lease began (it touched the device first). Lingering: a process still on its GPU after its lease ended,
    with the job that held the GPU then, if any. A `lease_gpus` block ends before its process exits and the
    CUDA context lives until the exit, so a finished job's context and the next job's may share a device
    for that moment.
    """
    by_pid: dict[int, list[Lease]] = {}
    for lease in leases:
        by_pid.setdefault(lease.pid, []).append(lease)
    unleased, lingering, workers = [], [], []
    for sample in samples:
        own = [lease for lease in by_pid.get(sample.pid, []) if sample.uuid in lease.uuids]
        if any(lease.start <= sample.time <= lease.end for lease in own):
            continue
        if sample.pid not in by_pid and any(
            len(lease.uuids) > 1 and sample.uuid in lease.uuids and lease.start <= sample.time <= lease.end
            for lease in leases
        ):
            workers.append(sample)
            continue
        ended = [lease.end for lease in own if lease.end < sample.time]
        if not ended:
            unleased.append(sample)
            continue
        other = next(
            (
                lease
                for lease in leases
                if lease.pid != sample.pid and sample.uuid in lease.uuids and lease.start <= sample.time <= lease.end
            ),
            None,
        )
        lingering.append(Lingering(sample, (sample.time - max(ended)).total_seconds(), other))
    return Classified(unleased, lingering, workers)


def _seen_on(lease: Lease, samples: list[GpuSample]) -> str:
    seen = sorted({s.uuid for s in samples if s.pid == lease.pid})
    return ", ".join(seen) or "-"


def _clock(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%H:%M:%S.%f")[:-3]


def report(leases: list[Lease], logs_dir: Path, samples: list[GpuSample] | None = None) -> str:
    origin = leases[0].start
    sampled = samples is not None
    lines = [
        f"Lease records under `{logs_dir}`: {len(leases)} lease(s); times UTC on "
        f"{origin.astimezone(timezone.utc).date().isoformat()}, offsets from the first acquisition.",
        "",
        "| rule | wildcards | devices | UUID(s) | start | end | start s | end s | held s |"
        + (" seen on (nvidia-smi) |" if sampled else ""),
        "| --- | --- | --- | --- | --- | --- | ---: | ---: | ---: |" + (" --- |" if sampled else ""),
    ]
    for lease in leases:
        uuids = ", ".join(u or "?" for u in lease.uuids)
        end_mark = " (log mtime)" if lease.end_from_log_mtime else ""
        lines.append(
            f"| {lease.rule} | {lease.wildcards} | {','.join(lease.devices)} | {uuids} | {_clock(lease.start)} | "
            f"{_clock(lease.end)}{end_mark} | {(lease.start - origin).total_seconds():.3f} | "
            f"{(lease.end - origin).total_seconds():.3f} | {(lease.end - lease.start).total_seconds():.3f} |"
            + (f" {_seen_on(lease, samples)} |" if sampled else "")
        )
    most_jobs, most_gpus = peak_concurrency(leases)
    span = max(lease.end for lease in leases) - origin
    hosts = sorted({lease.host for lease in leases})
    distinct = sorted({g for lease in leases for g in lease.gpus})
    lines += [
        "",
        f"- hosts: {', '.join(hosts)}; distinct physical GPUs leased: {len(distinct)} ({', '.join(distinct)})",
        f"- most jobs holding GPUs at once: {most_jobs.jobs} (holding {most_jobs.gpus} GPU(s), first at "
        f"+{(most_jobs.at - origin).total_seconds():.3f} s)",
        f"- most GPUs held at once: {most_gpus.gpus} (by {most_gpus.jobs} job(s), first at "
        f"+{(most_gpus.at - origin).total_seconds():.3f} s)",
        f"- first acquisition to last release: {span.total_seconds():.3f} s",
    ]
    clashes = conflicts(leases)
    if clashes:
        lines.append(f"- CONFLICTS: {len(clashes)} pair(s) of overlapping jobs shared a slot of a GPU:")
        lines += [
            f"  - {a.rule} {a.wildcards} and {b.rule} {b.wildcards}: {', '.join(shared)}" for a, b, shared in clashes
        ]
    else:
        lines.append("- conflicts: none (no two jobs with overlapping lease intervals shared a slot of a physical GPU)")
    if sampled:
        found = classify_samples(leases, samples)
        stray, lingering = found.unleased, found.lingering
        lines.append(
            f"- nvidia-smi samples: {len(samples)} (process, GPU) observations; "
            + (
                f"UNLEASED USE: {len(stray)}, e.g. pid {stray[0].pid} on {stray[0].uuid}"
                if stray
                else "every process seen on a GPU held a lease on that GPU when first seen there, or ran "
                "inside a multi-GPU lease of that GPU"
            )
        )
        if found.workers:
            lines.append(
                f"- data-parallel workers: {len({w.pid for w in found.workers})} process(es) without a lease of "
                f"their own, {len(found.workers)} observation(s), each inside a multi-GPU lease of its GPU"
            )
        if lingering:
            shared = sum(1 for item in lingering if item.other_holder is not None)
            lines.append(
                f"- after release: {len(lingering)} sample(s) of a process still on its GPU after its release "
                f"record (at most {max(item.seconds_after_release for item in lingering):.3f} s after; its CUDA "
                f"context lives until the process exits), {shared} of them while another job held that GPU"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("logs", type=Path, help="a workflow's logs/ directory")
    parser.add_argument("--gpu-samples", type=Path, help="lines 'unix_time, pid, gpu_uuid' sampled in the run")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args(argv)
    leases = read_leases(args.logs)
    if not leases:
        print(f"no lease records under {args.logs}", file=sys.stderr)
        return 2
    samples = read_gpu_samples(args.gpu_samples) if args.gpu_samples else None
    text = report(leases, args.logs, samples)
    print(text, end="")
    if args.out:
        args.out.write_text(text)
    return 1 if conflicts(leases) or (samples and classify_samples(leases, samples).unleased) else 0


if __name__ == "__main__":
    sys.exit(main())
