"""Checkpoints: a killed training resumes to the result of an uninterrupted one; a kill mid-save never leaves
a checkpoint that looks valid."""

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from test_train import toy, train_tiny
from tiny_models import tiny_bert, train_config
from w2s.engine.checkpoint import NAME, fingerprint, load_checkpoint, remove_checkpoints, save_checkpoint
from w2s.engine.losses import build_loss

SCRIPTS = Path(__file__).resolve().parent.parent / "workflow" / "scripts"


class Killed(Exception):
    pass


def kill_at_step(monkeypatch, step: int) -> None:
    """Die inside optimizer step `step`, after its forward and backward passes, before its update."""
    calls = []
    adamw_step = torch.optim.AdamW.step

    def dying(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == step:
            raise Killed
        return adamw_step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", dying)


def params(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_a_killed_training_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    path = str(tiny_bert(tmp_path / "bert"))  # with dropout, so that resuming must restore the RNG streams
    train, val = toy(1), toy(1).iloc[::2]
    # 12 examples in batches of 4 over 2 epochs: 6 steps, evaluated and saved every 2.
    cfg = train_config(lr=1e-3, batch_size=4, micro_batch_size=2, eval_batch_size=16, evals_per_epoch=2, max_length=16)

    def run(cfg=cfg, **kwargs):
        # logconf keeps the last effective batch of predictions: state beyond the model that must come back too.
        return train_tiny(path, cfg, train, val, build_loss("logconf", warmup_frac=0.5), **kwargs)

    whole_model, whole = run()
    ckpt = tmp_path / "ckpt"
    kill_at_step(monkeypatch, 5)
    with pytest.raises(Killed):
        run(checkpoint_dir=ckpt, checkpoint_every=2)
    monkeypatch.undo()
    assert torch.load(ckpt / NAME, weights_only=False)["step"] == 4  # mid-epoch: the stream's position matters
    retry_dir = tmp_path / "retry"
    shutil.copytree(ckpt, retry_dir)

    resumed_model, resumed = run(checkpoint_dir=ckpt, checkpoint_every=2)
    assert resumed["resumed_from_step"] == 4
    for key in ("history", "chosen_step", "total_steps", "train_tokens"):
        assert resumed[key] == whole[key], key
    want = params(whole_model)
    assert all(torch.equal(p, want[n]) for n, p in params(resumed_model).items())

    # Killed after training (while predicting, say): the final checkpoint spares the whole training.
    again_model, again = run(checkpoint_dir=ckpt)
    assert again["resumed_from_step"] == 6 and again["history"] == whole["history"]
    assert all(torch.equal(p, want[n]) for n, p in params(again_model).items())

    # An out-of-memory retry (smaller micro-batch) still resumes; other settings start afresh.
    assert run(cfg.for_attempt(2), checkpoint_dir=retry_dir)[1]["resumed_from_step"] == 4
    assert run(dataclasses.replace(cfg, lr=2e-3, max_steps=1), checkpoint_dir=ckpt)[1]["resumed_from_step"] == 0

    remove_checkpoints(ckpt)
    remove_checkpoints(ckpt)
    assert not ckpt.exists()


@pytest.mark.parametrize("minutes, saved_step", [(0, 4), (1e-9, 4), (10, None)])
def test_a_jobs_checkpoints_come_at_evaluations_once_checkpoint_minutes_have_passed(
    tmp_path, monkeypatch, minutes, saved_step
):
    """0: at every evaluation; a moment: at the first evaluation after it; 10 minutes: not in this short run,
    whose kill then costs its few steps rather than the writing of a checkpoint at every evaluation."""
    path = str(tiny_bert(tmp_path / "bert"))
    train, val = toy(1), toy(1).iloc[::2]
    # 6 steps, evaluated every 2.
    cfg = train_config(
        lr=1e-3, batch_size=4, micro_batch_size=2, evals_per_epoch=2, max_length=16, checkpoint_minutes=minutes
    )
    ckpt = tmp_path / "ckpt"
    kill_at_step(monkeypatch, 5)
    with pytest.raises(Killed):
        train_tiny(path, cfg, train, val, checkpoint_dir=ckpt)
    monkeypatch.undo()
    if saved_step is None:
        assert not (ckpt / NAME).exists()
    else:
        assert torch.load(ckpt / NAME, weights_only=False)["step"] == saved_step
    assert train_tiny(path, cfg, train, val, checkpoint_dir=ckpt)[1]["resumed_from_step"] == (saved_step or 0)


def test_fingerprint_follows_settings_and_data():
    data = np.arange(6)
    same = [fingerprint({"lr": 1e-3}, data), fingerprint({"lr": 1e-3}, data.copy())]
    other = [
        fingerprint({"lr": 2e-3}, data),
        fingerprint({"lr": 1e-3}, data[::-1]),
        fingerprint({"lr": 1e-3}, data.reshape(2, 3)),
        fingerprint({"lr": 1e-3}, data.astype(np.int32)),
    ]
    assert same[0] == same[1] and len({same[0], *other}) == 5


SAVER = """
import sys, torch
from w2s.engine.checkpoint import save_checkpoint
for step in range(1, 10**6):
    state = {"fingerprint": "run", "step": step, "payload": torch.full((2**23,), float(step))}
    print(step, flush=True)
    save_checkpoint(state, sys.argv[1])
"""


def test_sigkill_mid_save_leaves_the_previous_checkpoint(tmp_path):
    script = tmp_path / "saver.py"
    script.write_text(SAVER)
    env = {**os.environ, "PYTHONPATH": str(SCRIPTS)}
    for attempt in range(5):
        directory = tmp_path / f"ckpt{attempt}"
        saver = subprocess.Popen(
            [sys.executable, str(script), str(directory)], stdout=subprocess.PIPE, text=True, env=env
        )
        assert any(line.strip() == "3" for line in saver.stdout), "the saver died before its third save"
        # Kill as soon as a save's temporary file is seen, so that a loaded machine cannot make the kill
        # land between two saves.
        deadline = time.monotonic() + 30
        while not list(directory.glob(f".{NAME}.*.part")) and time.monotonic() < deadline:
            time.sleep(0.0005)
        os.kill(saver.pid, signal.SIGKILL)
        saver.wait()
        saver.stdout.close()
        partial = list(directory.glob(f".{NAME}.*.part"))
        if partial:
            break
    else:
        pytest.fail("the kill never landed in the middle of a save")

    # The checkpoint left is the last complete save, whole.
    state = load_checkpoint(directory, "run")
    assert state["step"] >= 2 and torch.equal(state["payload"], torch.full((2**23,), float(state["step"])))
    save_checkpoint({"fingerprint": "run", "step": 3}, directory)
    assert not any(p.exists() for p in partial)
    assert load_checkpoint(directory, "run")["step"] == 3 and load_checkpoint(directory, "another run") is None
