"""LoRA across processes, on CPUs: two gloo processes started by the launcher that a multi-GPU job uses train
the same adapters and head as one process, and leave the frozen base as it was."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tiny_models import tiny_gpt2
from w2s.execution.launch import PACKAGE_PARENT, launch_command

RUN = """
import sys
from pathlib import Path
import torch
import transformers
from test_train import POS, NEG, table, toy
from w2s.engine.losses import build_loss
from w2s.engine.modeling import ModelSpec, load_classifier, load_tokenizer
from tiny_models import train_config
from w2s.engine.train import make_accelerator, predict_proba, train_classifier

path, out, checkpointing = sys.argv[1], Path(sys.argv[2]), sys.argv[3] == "1"
spec = ModelSpec("tiny", path, gradient_checkpointing=checkpointing,
                 lora={"enabled": True, "r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["c_attn"]})
transformers.set_seed(0)
accelerator = make_accelerator()
model = load_classifier(spec)
tokenizer = load_tokenizer(spec)
before = {n: p.detach().clone() for n, p in model.named_parameters()}
# 9 training examples in batches of 4: steps of 4, 4 and 1 examples, micro-batches of 3 and 1, so that the
# processes get unequal shares and one of them none at all.
cfg = train_config(lr=1e-2, head_lr=3e-2, batch_size=4, micro_batch_size=3, eval_batch_size=5, epochs=3, max_length=16)
info = train_classifier(model, tokenizer, toy(1).iloc[1:10], toy(1).iloc[::3], build_loss("xent"), cfg, 0,
                        accelerator)
test = table(POS + NEG, [1.0] * 6 + [0.0] * 6, "x")
preds = predict_proba(model, tokenizer, test["text"].tolist(), 5, 16, accelerator)
torch.save({"before": before, "after": {n: p.detach().clone() for n, p in model.named_parameters()},
            "trainable": sorted(n for n, p in model.named_parameters() if p.requires_grad),
            "info": info, "preds": torch.from_numpy(preds)}, out / f"rank{accelerator.process_index}.pt")
if torch.distributed.is_initialized():
    torch.distributed.destroy_process_group()
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same LoRA training in one process, in two, and in two with gradient checkpointing: each process's
    parameters before and after, history and predictions."""
    tmp = tmp_path_factory.mktemp("lora")
    gpt2 = tiny_gpt2(tmp / "gpt2")
    # Dropout masks depend on how a batch is shared out across processes.
    config = json.loads((gpt2 / "config.json").read_text())
    config.update(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    (gpt2 / "config.json").write_text(json.dumps(config))
    script = tmp / "run.py"
    script.write_text(RUN)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE_PARENT), str(Path(__file__).parent)])}
    out = {}
    for name, command, checkpointing in [
        ("one", [sys.executable], "0"),
        ("two", launch_command(2), "0"),
        ("two, checkpointed", launch_command(2), "1"),
    ]:
        out[name] = tmp / name.replace(", ", "_")
        out[name].mkdir()
        subprocess.run(command + [str(script), str(gpt2), str(out[name]), checkpointing], check=True, env=env)
    return {
        name: [torch.load(p, weights_only=False) for p in sorted(path.glob("rank*.pt"))] for name, path in out.items()
    }


def test_only_the_adapters_and_the_head_are_trained(runs):
    for name, processes in runs.items():
        for run in processes:
            trainable = set(run["trainable"])
            assert {"head.weight", "head.bias"} <= trainable and any("lora_" in n for n in trainable), name
            assert all("lora_" in n for n in trainable - {"head.weight", "head.bias"}), name
            for n, before in run["before"].items():
                moved = not torch.equal(before, run["after"][n])
                assert moved == (n in trainable), (name, n, moved)


def test_processes_hold_the_same_adapters(runs):
    assert [len(processes) for processes in runs.values()] == [1, 2, 2]
    for name in ("two", "two, checkpointed"):
        first, second = runs[name]
        assert first["info"]["num_processes"] == 2
        assert all(torch.equal(first["after"][n], second["after"][n]) for n in first["trainable"]), name
        assert torch.equal(first["preds"], second["preds"]), name


@pytest.mark.parametrize("name", ["two", "two, checkpointed"])
def test_two_processes_train_what_one_process_trains(runs, name):
    (one,), two = runs["one"], runs[name][0]
    assert one["info"]["total_steps"] == two["info"]["total_steps"] == 9
    assert one["info"]["chosen_step"] == two["info"]["chosen_step"]
    for a, b in zip(one["info"]["history"], two["info"]["history"], strict=True):
        assert a["step"] == b["step"] and abs(a["train_loss"] - b["train_loss"]) <= 1e-5 * abs(a["train_loss"])
    for n in one["trainable"]:
        assert torch.allclose(one["after"][n], two["after"][n], atol=1e-6, rtol=0), n
    assert torch.allclose(one["preds"], two["preds"], atol=1e-6, rtol=0)
    assert one["preds"].std() > 1e-2  # the model moved away from its constant start
