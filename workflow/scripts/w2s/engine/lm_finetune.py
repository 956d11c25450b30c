"""Finetuning a language model with its pretraining objective: next-token prediction (causal) for a decoder,
BERT-style masked-token prediction (masked) for an encoder.

Every optimiser step sees one effective batch, drawn by a seeded shuffle; its masked positions are drawn for
the whole batch before it is cut into micro-batches, and each micro-batch's summed cross-entropy is divided
by the batch's target-token count, so the accumulated gradient is the full batch's whatever the micro-batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from transformers import PreTrainedTokenizerBase, get_linear_schedule_with_warmup

from w2s.engine.batching import collate, length_grouped_batches

OBJECTIVES = ("causal", "masked")
IGNORE = -100  # the label of a position that is no target

# One row of an effective batch: the model's input ids and, position by position, the token it must predict
# there (masked) or the token that is a target there (causal, shifted when the loss is taken), else IGNORE.
Row = tuple[list[int], list[int]]


@dataclass(frozen=True)
class LMTrainSettings:
    lr: float
    epochs: int
    batch_size: int
    micro_batch_size: int
    warmup_frac: float = 0.1
    weight_decay: float = 0.0
    mlm_probability: float = 0.15
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {self.epochs}")
        if not 1 <= self.micro_batch_size <= self.batch_size:
            raise ValueError(
                f"micro_batch_size must be between 1 and batch_size ({self.batch_size}), got {self.micro_batch_size}"
            )
        if not 0 <= self.warmup_frac < 1:
            raise ValueError(f"warmup_frac must be in [0, 1), got {self.warmup_frac}")
        if not 0 < self.mlm_probability < 1:
            raise ValueError(f"mlm_probability must be in (0, 1), got {self.mlm_probability}")


def causal_rows(sequences: Sequence[Sequence[int]], loss_masks: Sequence[Sequence[bool]] | None) -> list[Row]:
    """Each sequence with its targets: the tokens whose mask entry is True (None: every token after the first).

    The first token has nothing before it to predict it from, so a True there is refused rather than dropped.
    """
    rows = []
    for i, ids in enumerate(sequences):
        mask = [False] + [True] * (len(ids) - 1) if loss_masks is None else list(loss_masks[i])
        if len(mask) != len(ids):
            raise ValueError(f"loss_masks[{i}] has {len(mask)} entries for a sequence of {len(ids)} tokens")
        if mask and mask[0]:
            raise ValueError(f"loss_masks[{i}][0] is True, but the first token has no context to be predicted from")
        if not any(mask):
            raise ValueError(f"sequence {i} has no target token (it needs 2 tokens or more, and a True in its mask)")
        rows.append((list(ids), [t if m else IGNORE for t, m in zip(ids, mask)]))
    return rows


def mask_tokens(
    ids: Sequence[int],
    special_ids: set[int],
    mask_id: int,
    replacement_ids: np.ndarray,
    probability: float,
    rng: np.random.Generator,
) -> Row:
    """BERT's corruption: each non-special token is a target with `probability` (at least one per sequence,
    so that short texts contribute too); a target's input is the mask token 80% of the time, a random
    non-special token 10% and itself 10%. Special tokens are never targets and never changed."""
    ids = np.asarray(ids, dtype=np.int64)
    maskable = np.flatnonzero(~np.isin(ids, list(special_ids)))
    if len(maskable) == 0:
        raise ValueError("a sequence holds special tokens only: nothing to mask")
    chosen = maskable[rng.random(len(maskable)) < probability]
    if len(chosen) == 0:
        chosen = rng.choice(maskable, size=1)
    labels = np.full_like(ids, IGNORE)
    labels[chosen] = ids[chosen]
    inputs = ids.copy()
    draw = rng.random(len(chosen))
    inputs[chosen[draw < 0.8]] = mask_id
    randomised = chosen[(draw >= 0.8) & (draw < 0.9)]
    inputs[randomised] = rng.choice(replacement_ids, size=len(randomised))
    return inputs.tolist(), labels.tolist()


def accumulate_lm_gradients(model, rows: Sequence[Row], pad_id: int, micro_batch_size: int, causal: bool) -> float:
    """Accumulate the gradient of the mean cross-entropy over all target tokens of `rows` (one effective
    batch) into the parameters' .grad, micro-batch by micro-batch; return that mean."""
    device = next(model.parameters()).device
    targets = sum(sum(label != IGNORE for label in labels) for _, labels in rows)
    # Summed on the device and read once per effective batch: reading each micro-batch's loss would make the
    # host wait for the device at every micro-batch.
    total = torch.zeros((), device=device)
    for start in range(0, len(rows), micro_batch_size):
        micro = rows[start : start + micro_batch_size]
        batch = {k: v.to(device) for k, v in collate([ids for ids, _ in micro], pad_id).items()}
        labels = torch.full(batch["input_ids"].shape, IGNORE, dtype=torch.long)
        for row, (_, row_labels) in enumerate(micro):
            labels[row, : len(row_labels)] = torch.as_tensor(row_labels, dtype=torch.long)
        labels = labels.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(**batch).logits
        if causal:
            logits, labels = logits[:, :-1], labels[:, 1:]
        loss = F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE, reduction="sum"
        )
        loss = loss / targets
        loss.backward()
        total += loss.detach()
    return float(total)


def _optimizer(model, settings: LMTrainSettings, on_gpu: bool) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    # Biases and norm weights (1-d tensors) are not decayed, as is standard for transformers.
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": settings.weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=settings.lr, fused=on_gpu)


def train_language_model(
    model,
    tokenizer: PreTrainedTokenizerBase,
    sequences: list[list[int]],
    loss_masks: list[list[bool]] | None,
    objective: str,
    settings: LMTrainSettings,
) -> list[dict]:
    """Finetunes `model` (an AutoModelForCausalLM for objective "causal", AutoModelForMaskedLM for "masked")
    in place on token-id sequences (special tokens included). Causal: the loss is the mean cross-entropy over
    the tokens whose loss_masks entry is True (None = every token after the first); masked: standard
    BERT-style masking with mlm_probability (loss_masks must be None; special tokens never masked). AdamW,
    linear warmup then linear decay, effective batch `batch_size` accumulated from micro-batches of
    `micro_batch_size` (loss weighted by token count so the gradient equals the full-batch one), bf16
    autocast on CUDA, seeded shuffling and masking. Returns the training curve: one {"step": int,
    "loss": float} per optimiser step. The model is left in eval mode."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if not sequences:
        raise ValueError("no sequences to train on")
    if loss_masks is not None and len(loss_masks) != len(sequences):
        raise ValueError(f"{len(loss_masks)} loss_masks for {len(sequences)} sequences")
    causal = objective == "causal"
    if causal:
        rows = causal_rows(sequences, loss_masks)
    else:
        if loss_masks is not None:
            raise ValueError("the masked objective draws its own targets: pass loss_masks=None")
        if tokenizer.mask_token_id is None:
            raise ValueError(f"the masked objective needs a mask token, and {type(tokenizer).__name__} has none")
        special_ids = set(tokenizer.all_special_ids)
        vocab = min(len(tokenizer), model.get_input_embeddings().num_embeddings)
        replacement_ids = np.setdiff1d(np.arange(vocab), list(special_ids))
    # Padding is never attended to nor a target, so any id serves where the tokenizer has no pad token (GPT-2).
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    torch.manual_seed(settings.seed)
    shuffle = np.random.default_rng([settings.seed, 0])
    masking = np.random.default_rng([settings.seed, 1])
    lengths = [len(s) for s in sequences]
    # The number of batches depends on the lengths' count alone, not on the draw.
    total_steps = settings.epochs * len(length_grouped_batches(lengths, settings.batch_size, np.random.default_rng(0)))
    on_gpu = next(model.parameters()).device.type == "cuda"
    optimizer = _optimizer(model, settings, on_gpu)
    scheduler = get_linear_schedule_with_warmup(optimizer, round(settings.warmup_frac * total_steps), total_steps)

    model.train()
    curve = []
    for _ in range(settings.epochs):
        for batch in length_grouped_batches(lengths, settings.batch_size, shuffle):
            if causal:
                batch_rows = [rows[i] for i in batch]
            else:
                batch_rows = [
                    mask_tokens(
                        sequences[i],
                        special_ids,
                        tokenizer.mask_token_id,
                        replacement_ids,
                        settings.mlm_probability,
                        masking,
                    )
                    for i in batch
                ]
            loss = accumulate_lm_gradients(model, batch_rows, pad_id, settings.micro_batch_size, causal)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            curve.append({"step": len(curve) + 1, "loss": loss})
    model.eval()
    return curve
