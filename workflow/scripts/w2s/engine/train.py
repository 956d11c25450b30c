"""The training loop: AdamW, warmup + cosine, gradient accumulation, length-grouped dynamic batches,
model selection on a validation split, batched inference, checkpoints to resume from, and data parallelism
over the processes of `accelerate launch`. Readable in one sitting on purpose.

An optimizer step always sees one effective batch of `batch_size` examples drawn by the same seeded
stream, whatever the micro-batch size or the number of processes: these only decide how the batch is cut
up (micro-batches in turn, each shared out across processes), so they change the result by float error only.
So do the options for speed on GPUs (w2s.engine.batching.MicroBatching): micro-batches cut by a token
budget, decoders' examples packed without padding, and compiled layers fed a bounded set of shapes; and
inference batches cut by a token budget (packed too, for a model that trains packed).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import logging
import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, broadcast, gather_object
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase, get_cosine_schedule_with_warmup

from w2s.clock import job_seconds
from w2s.engine.batching import MicroBatching, collate, length_grouped_batches, tokenize
from w2s.engine.checkpoint import fingerprint, load_checkpoint, process_state, restore_process_state, save_checkpoint
from w2s.engine.losses import Loss
from w2s.engine.modeling import Classifier
from w2s.engine.packing import enable_packing
from w2s.scoring import soft_cross_entropy

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The workflow's defaults live in its config schema (see finetune.train_config_from), so settings have
    none here, except those that a caller may leave out: head_lr (None: the head takes lr), max_steps
    (None: `epochs` decides), trackers (none) and the options for speed, off (micro_batch_tokens None: cut by
    micro_batch_size; eval_batch_tokens None: cut by eval_batch_size; packing False; compile_buckets matters
    under compile only, and is the schema's).
    Keyword-only, so that these can stay beside their kin."""

    lr: float
    head_lr: float | None = None
    batch_size: int
    micro_batch_size: int
    eval_batch_size: int
    epochs: float
    max_steps: int | None = None
    warmup_frac: float
    weight_decay: float
    evals_per_epoch: int
    select_best_on_val: bool
    max_length: int
    compile: bool
    micro_batch_tokens: int | None = None
    eval_batch_tokens: int | None = None
    packing: bool = False
    compile_buckets: int = 8
    # A job's checkpoints come at its evaluations once this many minutes have passed since its last one (or
    # since it began to train); 0 = at every evaluation and at the end.
    checkpoint_minutes: float = 0.0
    trackers: tuple[str, ...] = ()  # experiment trackers that accelerate logs to (see make_accelerator)

    def for_attempt(self, attempt: int) -> TrainConfig:
        """The config for a job's `attempt` (1 = first try): each retry halves the micro-batch (its examples,
        and its token budget if it has one) and the inference batch (likewise), as after a CUDA out-of-memory
        error. The effective batch stays, so a retry trains the same model up to float error; the micro-batch
        stays a divisor of it."""
        if attempt < 1:
            raise ValueError(f"attempt counts from 1, got {attempt}")
        if attempt == 1:
            return self
        target = min(self.batch_size, max(1, self.micro_batch_size >> (attempt - 1)))
        micro = max(d for d in range(1, target + 1) if self.batch_size % d == 0)

        def halved(budget: int | None) -> int | None:
            return None if budget is None else max(1, budget >> (attempt - 1))

        return dataclasses.replace(
            self,
            micro_batch_size=micro,
            micro_batch_tokens=halved(self.micro_batch_tokens),
            eval_batch_size=max(1, self.eval_batch_size >> (attempt - 1)),
            eval_batch_tokens=halved(self.eval_batch_tokens),
        )

    def micro_batching(self) -> MicroBatching:
        return MicroBatching(
            examples=self.micro_batch_size,
            batch_size=self.batch_size,
            max_length=self.max_length,
            tokens=self.micro_batch_tokens,
            packed=self.packing,
            buckets=self.compile_buckets if self.compile else None,
        )

    def inference_batching(self) -> MicroBatching:
        """How inference (validation, predictions, features) cuts its length-sorted examples into forwards:
        `eval_batch_size` examples each, or with `eval_batch_tokens` as many as fit that budget, packed in one
        row for a model that trains packed. Under compile, in compile buckets of their own (at most
        `eval_batch_size` examples a forward), so that the compiled layers serve inference too."""
        return MicroBatching(
            examples=self.eval_batch_size,
            batch_size=self.eval_batch_size,
            max_length=self.max_length,
            tokens=self.eval_batch_tokens,
            packed=self.packing and self.eval_batch_tokens is not None,
            buckets=self.compile_buckets if self.compile else None,
        )


# The experiment trackers a run may log to, and the package each needs.
TRACKER_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb"}


def make_accelerator(trackers: Sequence[str] = (), log_dir: Path | None = None) -> Accelerator:
    """The accelerator of one training job; with `trackers`, it logs to them (files under `log_dir`)."""
    for tracker in trackers:
        package = TRACKER_PACKAGES[tracker]
        # accelerate would drop a tracker whose package is missing without a word.
        if importlib.util.find_spec(package) is None:
            raise ModuleNotFoundError(
                f"train.trackers: {tracker!r} needs the {package!r} package, which is not installed: "
                f"pip install {package} (or remove {tracker!r} from train.trackers)"
            )
    on_gpu = torch.cuda.is_available()
    # A backbone may hold parameters that the classifier never uses (BERT's pooler); DDP raises at the second
    # step unless it is told to look for them. train_classifier turns the search off where there are none.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(
        mixed_precision="bf16" if on_gpu else "no",
        cpu=not on_gpu,
        kwargs_handlers=[ddp],
        log_with=list(trackers) or None,
        project_dir=log_dir,
    )


def build_optimizer(model: Classifier, cfg: TrainConfig, on_gpu: bool) -> torch.optim.Optimizer:
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


def progress(accelerator: Accelerator, *args, **kwargs) -> tqdm:
    """A progress bar on the main process only. `disable` is left unset there, so that TQDM_DISABLE=1 (which
    tqdm reads for arguments that are not given) still turns it off, e.g. in CI logs."""
    return tqdm(*args, **kwargs, **({} if accelerator.is_main_process else {"disable": True}))


def _compiled_unless_bucketed(batching: MicroBatching):
    """Compiled layers (compile: true, which needs torch >= 2.6) run eagerly under this unless the forwards come
    in compile buckets: a forward of a shape not seen before would be compiled anew."""
    if batching.buckets is not None or not hasattr(torch.compiler, "set_stance"):
        return nullcontext()
    return torch.compiler.set_stance("force_eager")


@torch.inference_mode()
def infer_token_ids(
    model: Classifier,
    ids: list[list[int]],
    pad_id: int,
    batching: int | MicroBatching,
    accelerator: Accelerator,
    desc: str,
    output: Callable[[Classifier, dict], torch.Tensor],
) -> np.ndarray:
    """`output(module, inputs)` (one row per example, then any rows to drop) for every tokenized example, in
    input order. The examples, longest first, go in forwards of `batching` (or that many examples each):
    `inputs` is its layout of one forward's examples, padded or packed.

    Under several processes each computes its share and every process returns all rows, so that model
    selection and outputs agree across processes.
    """
    # The bare module: a DDP wrapper would synchronise buffers at every forward, and processes holding
    # shares of different sizes make different numbers of forwards.
    module = accelerator.unwrap_model(model)
    module.eval()
    lengths = np.array([len(t) for t in ids], dtype=np.int64)
    # Dealt out longest first, so that every process gets about the same number of tokens; each process cuts
    # its own share (sorted, so each forward holds examples of similar length) into forwards.
    mine = np.argsort(-lengths, kind="stable")[accelerator.process_index :: accelerator.num_processes]
    if isinstance(batching, int):
        batching = MicroBatching(examples=batching, batch_size=batching, max_length=int(lengths.max(initial=1)))
    rows = None
    batches = batching.split(np.arange(len(mine)), lengths[mine], 1) if len(mine) else []
    bar = progress(accelerator, batches, desc=desc, leave=False)
    with _compiled_unless_bucketed(batching):
        for pos in bar:
            inputs = batching.layout([ids[mine[i]] for i in pos], pad_id, 1)
            inputs = {k: _to_device(v, accelerator.device) if torch.is_tensor(v) else v for k, v in inputs.items()}
            with accelerator.autocast():
                values = output(module, inputs)[: len(pos)].float().cpu().numpy()
            if rows is None:
                rows = np.empty((len(mine), *values.shape[1:]), dtype=values.dtype)
            rows[pos] = values
    out = None
    for idx, values in gather_object([(mine, rows)]):
        if values is None:
            continue
        if out is None:
            out = np.empty((len(ids), *values.shape[1:]), dtype=values.dtype)
        out[idx] = values
    # Only an empty input leaves nothing gathered.
    return np.empty(0) if out is None else out


def _p_class1(module: Classifier, batch: dict) -> torch.Tensor:
    return torch.softmax(module(**batch).float(), dim=-1)[:, 1]


def predict_token_ids(
    model: Classifier,
    ids: list[list[int]],
    pad_id: int,
    batching: int | MicroBatching,
    accelerator: Accelerator,
    desc: str,
) -> np.ndarray:
    """p(class 1) for every tokenized example, in input order (float64)."""
    return infer_token_ids(model, ids, pad_id, batching, accelerator, desc, _p_class1).astype(np.float64)


def predict_proba(
    model: Classifier,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    batching: int | MicroBatching,
    max_length: int,
    accelerator: Accelerator,
    desc: str = "predict",
) -> np.ndarray:
    """p(class 1) for every text, in input order; `batching` as infer_token_ids takes it."""
    ids = tokenize(tokenizer, texts, max_length)
    return predict_token_ids(model, ids, tokenizer.pad_token_id, batching, accelerator, desc)


def _evaluate(
    model, val_ids: list[list[int]], target: np.ndarray, pad_id: int, cfg: TrainConfig, accelerator
) -> dict[str, float]:
    p = predict_token_ids(model, val_ids, pad_id, cfg.inference_batching(), accelerator, "val")
    loss = soft_cross_entropy(target, p)
    acc = float(((p > 0.5) == (target > 0.5)).mean())
    return {"val_loss": loss, "val_acc": acc}


class BatchStream:
    """Effective batches of example indices, epoch after epoch, each epoch length-grouped anew.

    Its state (RNG, the current epoch's batches, the position in it) goes into checkpoints.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int):
        self.lengths, self.batch_size = lengths, batch_size
        self.rng = np.random.default_rng(seed)
        self.epoch: list[np.ndarray] = []
        self.position = 0

    def steps_per_epoch(self) -> int:
        # The number of batches depends on the lengths' count alone, not on the draw.
        return len(length_grouped_batches(self.lengths, self.batch_size, np.random.default_rng(0)))

    def __next__(self) -> np.ndarray:
        if self.position == len(self.epoch):
            self.epoch, self.position = length_grouped_batches(self.lengths, self.batch_size, self.rng), 0
        self.position += 1
        return self.epoch[self.position - 1]

    def state_dict(self) -> dict:
        return {
            "rng": self.rng.bit_generator.state,
            "epoch": [b.tolist() for b in self.epoch],
            "position": self.position,
        }

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.epoch = [np.asarray(b, dtype=np.int64) for b in state["epoch"]]
        self.position = state["position"]


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """On a GPU, copied from pinned memory without waiting: a plain copy from pageable memory waits for the
    device to finish its queue, which would stop the host at every micro-batch."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def accumulate_gradients(
    model,
    forward,
    loss_fn: Loss,
    ids,
    labels: torch.Tensor,
    batch: np.ndarray,
    pad_id: int,
    micro_batching: int | MicroBatching,
    progress: float,
    accelerator: Accelerator,
) -> torch.Tensor:
    """Accumulate the gradient of the mean loss over `batch`; return this process's part of that mean.

    The batch is cut into micro-batches (`micro_batching`, or that many examples each) and each micro-batch
    is shared out across processes. A loss is a mean over the examples it is given, so weighing it by (its
    examples / the batch's) gives every example the weight 1/len(batch) wherever it lands; DDP averages
    gradients over processes, hence the factor of the process count. Gradients are synchronised at the last
    micro-batch only.
    """
    rank, world = accelerator.process_index, accelerator.num_processes
    lengths = np.array([len(ids[j]) for j in batch])
    if isinstance(micro_batching, int):
        micro_batching = MicroBatching(examples=micro_batching, batch_size=len(batch), max_length=int(lengths.max()))
    micros = micro_batching.split(batch, lengths, world)
    total = torch.zeros((), device=accelerator.device)
    for i, micro in enumerate(micros):
        shard = micro[rank::world]
        rows = shard if len(shard) else micro[:1]
        with nullcontext() if i == len(micros) - 1 else accelerator.no_sync(model):
            inputs = micro_batching.layout([ids[j] for j in rows], pad_id, world)
            inputs = {k: _to_device(v, accelerator.device) if torch.is_tensor(v) else v for k, v in inputs.items()}
            with accelerator.autocast():
                logits = forward(**inputs)[: len(rows)]
            if len(shard):
                target = _to_device(labels[shard], accelerator.device)
                loss = loss_fn(logits, target, progress) * (len(shard) / len(batch))
                total += loss.detach()
            else:
                # A micro-batch smaller than the process count leaves this process without examples, but
                # DDP needs a backward from every process: a zero through the model adds nothing.
                loss = logits.sum() * 0.0
            accelerator.backward(loss * world)
    return total


def _run_id(
    cfg: TrainConfig,
    seed: int,
    loss_fn: Loss,
    trainable: dict[str, torch.Tensor],
    ids,
    labels: torch.Tensor,
    val_ids,
    val_target: np.ndarray,
) -> str:
    """A fingerprint of what fixes the training trajectory, so that only a checkpoint of this run is resumed.

    The micro-batch and inference batch are left out: an out-of-memory retry changes them and should resume;
    so are the trackers, which only watch, and the options for speed, which change the result by float error.
    """
    settings = {
        k: v
        for k, v in dataclasses.asdict(cfg).items()
        if k
        not in (
            "micro_batch_size",
            "micro_batch_tokens",
            "eval_batch_size",
            "eval_batch_tokens",
            "compile",
            "compile_buckets",
            "packing",
            "trackers",
        )
    }
    settings.update(
        seed=seed,
        loss=type(loss_fn).__name__,
        params=[[n, list(p.shape)] for n, p in trainable.items()],
        loss_settings={k: v for k, v in vars(loss_fn).items() if isinstance(v, (int, float, str, type(None)))},
    )
    return fingerprint(
        settings,
        np.fromiter(chain(*ids), dtype=np.int64),
        np.array([len(t) for t in ids]),
        labels.numpy(),
        np.fromiter(chain(*val_ids), dtype=np.int64),
        val_target,
    )


@dataclass
class _RunState:
    """How far a run has got; a checkpoint holds it besides the weights, optimizer, scheduler and stream."""

    step: int = 0
    history: list[dict] = field(default_factory=list)
    curve: list[dict] = field(default_factory=list)  # {step, train_loss} of every optimizer step so far
    best: tuple | None = None  # ((val_acc, -val_loss), step) of the best evaluation so far
    best_state: dict[str, torch.Tensor] | None = None
    tokens: int = 0
    seconds: float = 0.0  # training time of the earlier jobs that this run resumes
    started: float = 0.0  # time.perf_counter() when this process began to train
    saved: float = 0.0  # time.perf_counter() of this process's last checkpoint, or when it began to train

    def elapsed(self) -> float:
        return self.seconds + time.perf_counter() - self.started


def _load_params(trainable: dict[str, torch.Tensor], values: dict[str, torch.Tensor]) -> None:
    with torch.no_grad():
        for name, value in values.items():
            trainable[name].copy_(value.to(trainable[name].device))


def _resume(
    checkpoint: dict, trainable: dict[str, torch.Tensor], optimizer, scheduler, stream: BatchStream
) -> _RunState:
    """Put a checkpoint's weights, optimizer, scheduler and stream state back; return its run state."""
    _load_params(trainable, checkpoint["params"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    stream.load_state_dict(checkpoint["stream"])
    return _RunState(
        step=checkpoint["step"],
        history=checkpoint["history"],
        curve=checkpoint["curve"],
        best=checkpoint["best"],
        best_state=checkpoint["best_state"],
        tokens=checkpoint["tokens"],
        seconds=checkpoint["seconds"],
    )


def _record_losses(run: _RunState, pending: list[torch.Tensor], accelerator: Accelerator) -> None:
    """Append the training losses of the steps since the last record to the run's curve and trackers, and
    empty `pending`. Each loss stays on the device until here: one reduction over processes and one copy
    to the host for all of them, where one per step would stall the device at every step."""
    losses = accelerator.reduce(torch.stack(pending), "sum").tolist()
    first = run.step - len(pending) + 1
    for step, loss in enumerate(losses, start=first):
        run.curve.append({"step": step, "train_loss": loss})
        accelerator.log({"train/loss": loss}, step=step)
    pending.clear()


def _evaluate_and_select(
    run: _RunState,
    model,
    trainable: dict[str, torch.Tensor],
    val_ids,
    val_target: np.ndarray,
    pad_id: int,
    cfg: TrainConfig,
    total_steps: int,
    accelerator: Accelerator,
) -> None:
    """Evaluate on the validation split, record it in the history (with this step's training loss, already
    recorded) and keep the weights if they are the best."""
    scores = _evaluate(model, val_ids, val_target, pad_id, cfg, accelerator)
    metrics = {"step": run.step, "train_loss": run.curve[-1]["train_loss"], **scores}
    run.history.append(metrics)
    accelerator.log({f"val/{name.removeprefix('val_')}": value for name, value in scores.items()}, step=run.step)
    if accelerator.is_main_process:
        log.info("step %d/%d %s", run.step, total_steps, metrics)
    key = (metrics["val_acc"], -metrics["val_loss"])
    if cfg.select_best_on_val and (run.best is None or key > run.best[0]):
        run.best = (key, run.step)
        run.best_state = {n: p.detach().to("cpu", copy=True) for n, p in trainable.items()}
    model.train()  # inference left it in eval mode


def _checkpoint_due(run: _RunState, seconds: float, accelerator: Accelerator) -> bool:
    """Whether `seconds` have passed since the run's last checkpoint, as the main process's clock says: saving
    is a collective, so every process must decide alike."""
    if seconds <= 0:
        return True
    due = torch.tensor([time.perf_counter() - run.saved >= seconds], device=accelerator.device)
    return bool(broadcast(due, from_process=0).item())


def _save_checkpoint(
    directory: Path,
    run_id: str,
    run: _RunState,
    trainable: dict[str, torch.Tensor],
    optimizer,
    scheduler,
    stream: BatchStream,
    loss_fn: Loss,
    accelerator: Accelerator,
) -> None:
    # A collective: every process must take part, though only the main process writes.
    processes = gather_object([process_state(loss_fn, accelerator.device)])
    if accelerator.is_main_process:
        save_checkpoint(
            {
                "fingerprint": run_id,
                "step": run.step,
                "history": run.history,
                "curve": run.curve,
                "best": run.best,
                "best_state": run.best_state,
                "tokens": run.tokens,
                "seconds": run.elapsed(),
                "params": {n: p.detach().cpu() for n, p in trainable.items()},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "stream": stream.state_dict(),
                "processes": processes,
            },
            directory,
        )


def _restore_best(run: _RunState, trainable: dict[str, torch.Tensor], total_steps: int) -> int:
    """Put the best evaluated weights back unless they are the last ones; return the step they come from."""
    if run.best_state is None or run.best[1] == total_steps:
        return total_steps
    _load_params(trainable, run.best_state)
    return run.best[1]


def _unused_parameters(model: Classifier, ids, pad_id: int, device: torch.device) -> list[str]:
    """The trainable parameters that a forward and backward of one example leave without a gradient (the
    classifier never uses them; BERT's pooler, say). Evaluation mode: no dropout, so no RNG draw."""
    model.eval()
    inputs = {k: v.to(device) for k, v in collate(ids[:1], pad_id).items()}
    model(**inputs).float().sum().backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    model.zero_grad(set_to_none=True)
    model.train()
    return unused


def compile_blocks(model: Classifier, shapes: int) -> None:
    """Compile, in place and for static shapes, each block of every run of identical blocks (the transformer
    layers): one compile serves all layers alike, so the cost is one layer's per input shape, and the
    micro-batches come in at most `shapes` shapes, as do inference's forwards (compiled apart: they run in
    eval mode without gradients). The rest (embeddings, pooling, head) runs eagerly."""
    if not hasattr(torch.compiler, "set_stance"):
        raise RuntimeError(f"compile: true needs torch >= 2.6, this is torch {torch.__version__}; set compile: false")
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 2 * shapes)
    # A key-value cache hands each layer its index, on which compiled code would specialise (a compile per
    # layer); a classifier reads each input once and needs none.
    model.backbone.config.use_cache = False
    compiled: list[str] = []
    for name, module in model.named_modules():
        repeated = isinstance(module, nn.ModuleList) and len(module) > 1 and len({type(m) for m in module}) == 1
        if repeated and not any(name.startswith(f"{outer}.") for outer in compiled):
            compiled.append(name)
            for block in module:
                block.compile(dynamic=False)
    if not compiled:
        model.compile(dynamic=False)


def train_classifier(
    model: Classifier,
    tokenizer: PreTrainedTokenizerBase,
    train: pd.DataFrame,
    val: pd.DataFrame | None,
    loss_fn: Loss,
    cfg: TrainConfig,
    seed: int,
    accelerator: Accelerator,
    checkpoint_dir: Path | None = None,
    checkpoint_every: int | None = None,
) -> dict:
    """Train in place on `train` (columns text, soft_label); select the best checkpoint on `val` (same columns).

    With `checkpoint_dir`, the full training state is saved there every `checkpoint_every` optimizer steps
    and at the end, or else (no `checkpoint_every`) at evaluations and at the end once `cfg.checkpoint_minutes`
    have passed since the last save; a run that finds a checkpoint of its own resumes from it, finishing as an
    uninterrupted run would. Returns a history dict: per-evaluation metrics (`history`),
    the training loss of every optimizer step (`train_curve`: the mean over its effective batch, over all
    processes), throughput and the chosen step. The accelerator's trackers, if any, get both as they come.
    """
    torch.manual_seed(seed)
    on_gpu = accelerator.device.type == "cuda"
    pad_id = tokenizer.pad_token_id
    tokenize_started = time.perf_counter()
    ids = tokenize(tokenizer, train["text"].tolist(), cfg.max_length)
    lengths = [len(t) for t in ids]
    labels = torch.tensor(train["soft_label"].to_numpy(dtype=np.float32))
    # Validation texts are tokenized once per job, not at every evaluation.
    val_ids = [] if val is None else tokenize(tokenizer, val["text"].tolist(), cfg.max_length)
    val_target = np.empty(0) if val is None else val["soft_label"].to_numpy(dtype=np.float64)
    tokenize_seconds = time.perf_counter() - tokenize_started

    stream = BatchStream(lengths, cfg.batch_size, seed)
    steps_per_epoch = stream.steps_per_epoch()
    total_steps = cfg.max_steps if cfg.max_steps is not None else max(1, math.ceil(cfg.epochs * steps_per_epoch))
    eval_every = max(1, math.ceil(steps_per_epoch / cfg.evals_per_epoch))
    # A checkpoint of a 1B model (weights, best weights, AdamW's moments) is 18 GB: a short job that writes
    # one at every evaluation spends longer writing than training (benchmarks/results/gpu_busy_sweep.md).
    timed_checkpoints = None if checkpoint_every else cfg.checkpoint_minutes * 60
    checkpoint_every = checkpoint_every or eval_every

    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    optimizer = build_optimizer(model, cfg, on_gpu)
    scheduler = get_cosine_schedule_with_warmup(optimizer, round(cfg.warmup_frac * total_steps), total_steps)
    run_id = _run_id(cfg, seed, loss_fn, trainable, ids, labels, val_ids, val_target)

    run = _RunState()
    resumed = load_checkpoint(checkpoint_dir, run_id) if checkpoint_dir is not None else None
    if resumed is not None:
        run = _resume(resumed, trainable, optimizer, scheduler, stream)
        log.info("resuming from the checkpoint at step %d/%d in %s", run.step, total_steps, checkpoint_dir)
    micro_batching = cfg.micro_batching()
    if cfg.packing:
        enable_packing(model)
    if accelerator.num_processes > 1 and accelerator.ddp_handler is not None:
        # Looking for unused parameters costs a pass over the autograd graph at every backward.
        accelerator.ddp_handler.find_unused_parameters = bool(
            _unused_parameters(model, ids, pad_id, accelerator.device)
        )
    # The scheduler stays out of prepare(): accelerate would step it once per process at every step.
    model, optimizer = accelerator.prepare(model, optimizer)
    if cfg.compile:
        compile_blocks(accelerator.unwrap_model(model), cfg.compile_buckets)
    # Last, so that nothing set up above draws from the restored RNG streams. A process that did not exist
    # when the checkpoint was written (more processes now) keeps its freshly seeded streams.
    if resumed is not None and accelerator.process_index < len(resumed["processes"]):
        restore_process_state(resumed["processes"][accelerator.process_index], loss_fn, accelerator.device)

    run.started = run.saved = time.perf_counter()
    startup_seconds = job_seconds()
    bar = progress(accelerator, total=total_steps, initial=run.step, desc="train", leave=False)
    model.train()
    pending: list[torch.Tensor] = []  # the losses of the steps not yet in run.curve
    while run.step < total_steps:
        batch = next(stream)
        loss = accumulate_gradients(
            model, model, loss_fn, ids, labels, batch, pad_id, micro_batching, run.step / total_steps, accelerator
        )
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        run.step += 1
        run.tokens += int(sum(lengths[i] for i in batch))
        pending.append(loss)
        bar.update(1)
        last = run.step == total_steps
        evaluate = val is not None and (run.step % eval_every == 0 or last)
        save = (
            checkpoint_dir is not None
            and (run.step % checkpoint_every == 0 or last)
            and (timed_checkpoints is None or _checkpoint_due(run, timed_checkpoints, accelerator))
        )
        # Before a checkpoint, so that a resumed run has every earlier step's loss and redoes only later ones.
        if evaluate or save or last:
            _record_losses(run, pending, accelerator)
        if evaluate:
            _evaluate_and_select(run, model, trainable, val_ids, val_target, pad_id, cfg, total_steps, accelerator)
        if save:
            _save_checkpoint(checkpoint_dir, run_id, run, trainable, optimizer, scheduler, stream, loss_fn, accelerator)
            run.saved = time.perf_counter()
    bar.close()
    elapsed = run.elapsed()
    chosen = _restore_best(run, trainable, total_steps)
    return {
        "history": run.history,
        "train_curve": run.curve,
        "total_steps": total_steps,
        "chosen_step": chosen,
        "train_seconds": elapsed,
        "train_tokens": run.tokens,
        "tokens_per_second": run.tokens / elapsed if elapsed > 0 else float("nan"),
        "resumed_from_step": 0 if resumed is None else resumed["step"],
        "num_processes": accelerator.num_processes,
        "tokenize_seconds": tokenize_seconds,
        "startup_seconds": startup_seconds,
    }
