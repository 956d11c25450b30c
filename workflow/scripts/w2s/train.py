"""The training loop: AdamW, warmup + cosine, gradient accumulation, length-grouped dynamic batches,
model selection on a validation split, batched inference. Readable in one sitting on purpose."""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase, get_cosine_schedule_with_warmup

from w2s.batching import iterate, length_grouped_batches, sorted_batches, tokenize
from w2s.losses import Loss
from w2s.modeling import Classifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    lr: float = 5e-5
    head_lr: float | None = None
    batch_size: int = 32
    micro_batch_size: int = 16
    eval_batch_size: int = 64
    epochs: float = 2.0
    max_steps: int | None = None
    warmup_frac: float = 0.1
    weight_decay: float = 0.01
    evals_per_epoch: int = 1
    select_best_on_val: bool = True
    max_length: int = 256
    compile: bool = False

    @property
    def accumulation(self) -> int:
        return self.batch_size // self.micro_batch_size


def make_accelerator() -> Accelerator:
    on_gpu = torch.cuda.is_available()
    return Accelerator(mixed_precision="bf16" if on_gpu else "no", cpu=not on_gpu)


def _optimizer(model: Classifier, cfg: TrainConfig, on_gpu: bool) -> torch.optim.Optimizer:
    head = {id(p) for p in model.head.parameters()}
    body = [p for p in model.parameters() if p.requires_grad and id(p) not in head]
    # Biases and norm weights (1-d tensors) are not decayed, as is standard for transformers. The
    # zero-initialised head may take its own rate: backbones whose pooled features have a small norm (e.g.
    # sentence-transformers) otherwise barely move their logits away from 0 in a short finetune.
    groups = [
        {"params": [p for p in body if p.ndim >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in body if p.ndim < 2], "weight_decay": 0.0},
        {"params": [model.head.weight], "weight_decay": cfg.weight_decay, "lr": cfg.head_lr or cfg.lr},
        {"params": [model.head.bias], "weight_decay": 0.0, "lr": cfg.head_lr or cfg.lr},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, fused=on_gpu)


@torch.inference_mode()
def predict_token_ids(
    model: Classifier, ids: list[list[int]], pad_id: int, batch_size: int, accelerator: Accelerator, desc: str
) -> np.ndarray:
    """p(class 1) for every tokenized example, in input order."""
    model.eval()
    out = np.empty(len(ids), dtype=np.float64)
    batches = sorted_batches([len(t) for t in ids], batch_size)
    for idx, batch in tqdm(iterate(ids, batches, pad_id), total=len(batches), desc=desc, leave=False):
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with accelerator.autocast():
            logits = model(**batch)
        out[idx] = torch.softmax(logits.float(), dim=-1)[:, 1].cpu().numpy()
    return out


def predict_proba(
    model: Classifier,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    batch_size: int,
    max_length: int,
    accelerator: Accelerator,
    desc: str = "predict",
) -> np.ndarray:
    """p(class 1) for every text, in input order."""
    ids = tokenize(tokenizer, texts, max_length)
    return predict_token_ids(model, ids, tokenizer.pad_token_id, batch_size, accelerator, desc)


def _evaluate(model, val_ids: list[list[int]], target: np.ndarray, pad_id: int, cfg: TrainConfig,
              accelerator) -> dict[str, float]:
    p = predict_token_ids(model, val_ids, pad_id, cfg.eval_batch_size, accelerator, "val")
    pc = np.clip(p, 1e-7, 1 - 1e-7)
    loss = float(-(target * np.log(pc) + (1 - target) * np.log(1 - pc)).mean())
    acc = float(((p > 0.5) == (target > 0.5)).mean())
    return {"val_loss": loss, "val_acc": acc}


def train_classifier(
    model: Classifier,
    tokenizer: PreTrainedTokenizerBase,
    train: pd.DataFrame,
    val: pd.DataFrame | None,
    loss_fn: Loss,
    cfg: TrainConfig,
    seed: int,
    accelerator: Accelerator,
) -> dict:
    """Train in place on `train` (columns text, soft_label); select the best checkpoint on `val` (same columns).

    Returns a history dict (per-evaluation metrics, throughput, chosen step).
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    on_gpu = accelerator.device.type == "cuda"
    ids = tokenize(tokenizer, train["text"].tolist(), cfg.max_length)
    lengths = [len(t) for t in ids]
    labels = torch.tensor(train["soft_label"].to_numpy(dtype=np.float32))
    # Validation texts are tokenized once per job, not at every evaluation.
    if val is not None:
        val_ids = tokenize(tokenizer, val["text"].tolist(), cfg.max_length)
        val_target = val["soft_label"].to_numpy(dtype=np.float64)

    micro_per_epoch = math.ceil(len(ids) / cfg.micro_batch_size)
    if cfg.max_steps is not None:
        total_micro = cfg.max_steps * cfg.accumulation
    else:
        total_micro = max(cfg.accumulation, math.ceil(cfg.epochs * micro_per_epoch))
    total_steps = math.ceil(total_micro / cfg.accumulation)
    eval_every = max(1, math.ceil(micro_per_epoch / cfg.accumulation / cfg.evals_per_epoch))

    optimizer = _optimizer(model, cfg, on_gpu)
    scheduler = get_cosine_schedule_with_warmup(optimizer, round(cfg.warmup_frac * total_steps), total_steps)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    forward = torch.compile(model) if cfg.compile else model

    def micro_batches():
        while True:
            yield from iterate(ids, length_grouped_batches(lengths, cfg.micro_batch_size, rng), tokenizer.pad_token_id)

    history, best, best_state = [], None, None
    tokens, t0, step = 0, time.perf_counter(), 0
    stream = micro_batches()
    bar = tqdm(total=total_steps, desc="train", leave=False)
    model.train()
    for micro in range(total_micro):
        idx, batch = next(stream)
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with accelerator.autocast():
            logits = forward(**batch)
        loss = loss_fn(logits, labels[idx].to(accelerator.device), step / total_steps)
        accelerator.backward(loss / cfg.accumulation)
        tokens += int(batch["attention_mask"].sum())
        if (micro + 1) % cfg.accumulation and micro + 1 != total_micro:
            continue
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if val is not None and (step % eval_every == 0 or step == total_steps):
            scores = _evaluate(model, val_ids, val_target, tokenizer.pad_token_id, cfg, accelerator)
            metrics = {"step": step, "train_loss": float(loss.item()), **scores}
            history.append(metrics)
            log.info("step %d/%d %s", step, total_steps, metrics)
            key = (metrics["val_acc"], -metrics["val_loss"])
            if cfg.select_best_on_val and (best is None or key > best[0]):
                best = (key, step)
                best_state = {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}
            model.train()
    bar.close()
    elapsed = time.perf_counter() - t0

    chosen = total_steps
    if best_state is not None and best[1] != total_steps:
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in best_state.items():
                params[name].copy_(value.to(params[name].device))
        chosen = best[1]
    return {
        "history": history,
        "total_steps": total_steps,
        "chosen_step": chosen,
        "train_seconds": elapsed,
        "train_tokens": tokens,
        "tokens_per_second": tokens / elapsed if elapsed > 0 else float("nan"),
    }
