"""Dynamic padding with length-grouped batches: similar lengths share a batch, so little compute is padding."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase


def tokenize(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str], max_length: int) -> list[list[int]]:
    return tokenizer(list(texts), truncation=True, max_length=max_length, add_special_tokens=True)["input_ids"]


def length_grouped_batches(
    lengths: Sequence[int], batch_size: int, rng: np.random.Generator, megabatch_factor: int = 50
) -> list[np.ndarray]:
    """Shuffle, cut into megabatches, sort each by length, cut into batches, shuffle the batch order.

    Randomness stays (every epoch sees a new order and new batch mates) while padding shrinks.
    """
    lengths = np.asarray(lengths)
    order = rng.permutation(len(lengths))
    mega = batch_size * megabatch_factor
    batches = []
    for start in range(0, len(order), mega):
        chunk = order[start : start + mega]
        chunk = chunk[np.argsort(-lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return [batches[i] for i in rng.permutation(len(batches))]


def sorted_batches(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Inference batches, longest first so an out-of-memory error shows up at once."""
    order = np.argsort(-np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def collate(token_ids: Sequence[Sequence[int]], pad_id: int, side: str = "right") -> dict[str, torch.Tensor]:
    """Rows padded to the longest; on the left, every row ends in the last column (what generation and
    next-token scoring read)."""
    width = max(len(t) for t in token_ids)
    input_ids = torch.full((len(token_ids), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(token_ids), width), dtype=torch.long)
    for row, ids in enumerate(token_ids):
        cols = slice(width - len(ids), width) if side == "left" else slice(0, len(ids))
        input_ids[row, cols] = torch.as_tensor(ids, dtype=torch.long)
        attention_mask[row, cols] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def iterate(
    token_ids: Sequence[Sequence[int]], batches: list[np.ndarray], pad_id: int
) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
    for idx in batches:
        yield idx, collate([token_ids[i] for i in idx], pad_id)
