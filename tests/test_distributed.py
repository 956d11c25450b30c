"""Data-parallel training inside one job, on CPUs: two gloo processes started by the same launcher that a
multi-GPU job uses train the same model as one process."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tiny_models import tiny_bert
from w2s.execution.job import TrainingJob
from w2s.execution.launch import PACKAGE_PARENT, import_stage, launch, launch_command, main, stage_name
from w2s.execution.ranks import is_main_process
from w2s.stages.training import ceiling_stage


def test_main_process_is_rank_zero_or_an_unlaunched_process(monkeypatch):
    monkeypatch.delenv("RANK", raising=False)
    assert is_main_process()
    monkeypatch.setenv("RANK", "0")
    assert is_main_process()
    monkeypatch.setenv("RANK", "1")
    assert not is_main_process()


def test_launched_stage_gets_its_job_and_inputs_back_from_json(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(
        "w2s.stages.training.fake_stage", lambda job, **inputs: calls.append((job, inputs)), raising=False
    )
    job = TrainingJob("tiny", {"lr": 1e-3}, "/models/tiny", {"warmup_frac": 0.1}, 3, {"info": "out/info.json"}, 2)
    inputs = {"paths": {"test": str(tmp_path / "t.parquet")}, "layers": [1, 2]}
    (tmp_path / "arguments.json").write_text(json.dumps({"job": job.to_json(), "inputs": inputs}))
    main(["w2s.stages.training:fake_stage", str(tmp_path / "arguments.json")])
    assert calls == [(job, inputs)]
    with pytest.raises(TypeError, match="cannot pass"):
        launch(ceiling_stage, job, {"x": object()}, 2)


def test_a_stage_is_launched_by_its_module_and_name():
    assert stage_name(ceiling_stage) == "w2s.stages.training:ceiling_stage"
    assert import_stage(stage_name(ceiling_stage)) is ceiling_stage


def test_two_processes_train_what_one_process_trains(tmp_path):
    bert = str(tiny_bert(tmp_path / "bert", dropout=0.0))  # dropout masks depend on how a batch is shared out
    words = ["good movie", "bad film", "a great film", "awful movie", "the movie is good", "the film is bad"]
    frame = pd.DataFrame(
        {
            "id": [f"x{i}" for i in range(30)],
            "text": [f"{words[i % 6]} {i}" for i in range(30)],
            "label": [int(i % 6 in (0, 2, 4)) for i in range(30)],
        }
    )
    # 9 training examples in batches of 4: steps of 4, 4 and 1 examples, micro-batches of 3 and 1, so that the
    # processes get unequal shares and one of them none at all.
    splits = {"strong_train": frame.iloc[:9], "val": frame.iloc[9:17], "test": frame.iloc[17:]}
    split_paths = {name: tmp_path / f"{name}.parquet" for name in splits}
    for name, table in splits.items():
        table.to_parquet(split_paths[name])
    entry = {
        "lr": 3e-3,
        "head_lr": None,
        "batch_size": 4,
        "micro_batch_size": 3,
        "eval_batch_size": 3,
        "epochs": 3,
        "max_steps": None,
        "max_length": 16,
        "compile": False,
    }
    train_section = {"warmup_frac": 0.1, "weight_decay": 0.01, "evals_per_epoch": 1, "select_best_on_val": True}
    results = {}
    for processes in (1, 2):
        outputs = {"test": tmp_path / f"test{processes}.parquet", "info": tmp_path / f"info{processes}.json"}
        launch(
            ceiling_stage,
            TrainingJob("tiny", entry, bert, train_section, 0, outputs),
            {"split_paths": split_paths},
            processes,
        )
        results[processes] = pd.read_parquet(outputs["test"]), json.loads(outputs["info"].read_text())
    (one, one_info), (two, two_info) = results[1], results[2]
    assert two_info["num_processes"] == 2 and one_info["num_processes"] == 1
    assert two_info["total_steps"] == one_info["total_steps"] == 9
    assert two_info["chosen_step"] == one_info["chosen_step"]
    for a, b in zip(one_info["history"], two_info["history"]):
        assert a["step"] == b["step"] and np.isclose(a["train_loss"], b["train_loss"], rtol=1e-5)
    assert list(one["id"]) == list(two["id"])
    assert np.allclose(one["soft_pred"], two["soft_pred"], atol=1e-5)
    assert one["soft_pred"].std() > 1e-3  # the model moved away from its constant start


RESUME = """
import json, sys
from pathlib import Path
import torch
from accelerate import PartialState
from test_train import toy, train_tiny
from w2s.engine.checkpoint import NAME
from w2s.engine.losses import build_loss
from tiny_models import train_config

path, out = sys.argv[1], Path(sys.argv[2])
# Checkpoints at evaluations (every 2 steps) once a moment has passed: the processes must agree on the clock's
# verdict, since saving is a collective.
cfg = train_config(
    lr=1e-3, batch_size=4, micro_batch_size=3, eval_batch_size=16, evals_per_epoch=2, max_length=16,
    checkpoint_minutes=1e-9,
)
run = lambda **kw: train_tiny(path, cfg, toy(1), toy(1).iloc[::2], build_loss("logconf"), **kw)
whole_model, whole = run()
adamw_step, calls = torch.optim.AdamW.step, []
class Killed(Exception):
    pass
def dying(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == 5:  # inside step 5 of 6, one step after the checkpoint of step 4
        raise Killed
    return adamw_step(self, *args, **kwargs)
torch.optim.AdamW.step = dying
try:
    run(checkpoint_dir=out)
except Killed:
    torch.optim.AdamW.step = adamw_step
saved = torch.load(out / NAME, weights_only=False)
resumed_model, resumed = run(checkpoint_dir=out)
if PartialState().is_main_process:
    want = dict(whole_model.named_parameters())
    (out / "result.json").write_text(json.dumps({
        "saved_step": saved["step"], "saved_processes": len(saved["processes"]),
        "resumed_from": resumed["resumed_from_step"], "num_processes": resumed["num_processes"],
        "same_history": resumed["history"] == whole["history"],
        "same_params": all(torch.equal(p, want[n]) for n, p in resumed_model.named_parameters())}))
torch.distributed.destroy_process_group()
"""


def test_two_processes_killed_mid_training_resume_to_their_uninterrupted_result(tmp_path):
    """Each process has its own dropout stream and loss buffer: the checkpoint holds both processes'."""
    bert = str(tiny_bert(tmp_path / "bert"))  # with dropout
    script = tmp_path / "resume.py"
    script.write_text(RESUME)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE_PARENT), str(Path(__file__).parent)])}
    subprocess.run(launch_command(2) + [str(script), bert, str(tmp_path / "ckpt")], check=True, env=env)
    result = json.loads((tmp_path / "ckpt" / "result.json").read_text())
    assert result == {
        "saved_step": 4,
        "saved_processes": 2,
        "resumed_from": 4,
        "num_processes": 2,
        "same_history": True,
        "same_params": True,
    }
