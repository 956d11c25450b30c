"""Dynamic padding with length-grouped batches: similar lengths share a batch, so little compute is padding;
and how one effective batch is cut into forward passes (micro-batches) and laid out for them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from w2s.engine.packing import pack


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


def bucket(size: int, step: int, cap: int) -> int:
    """`size` rounded up to a multiple of `step`, at most `cap` (which must be >= size)."""
    return min(-(-size // step) * step, cap)


def pad_rows(batch: dict[str, torch.Tensor], width: int, rows: int, pad_id: int) -> dict[str, torch.Tensor]:
    """A collated batch widened to `width` columns and topped up to `rows` rows. Each added row holds one
    pad token that it attends to, so that no row is wholly masked (which some attention kernels turn into
    NaN); whoever reads the output drops those rows."""
    input_ids = torch.full((rows, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((rows, width), dtype=torch.long)
    n, w = batch["input_ids"].shape
    input_ids[:n, :w], attention_mask[:n, :w] = batch["input_ids"], batch["attention_mask"]
    attention_mask[n:, 0] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


@dataclass(frozen=True)
class MicroBatching:
    """How an effective batch is cut into micro-batches, each shared out over `world` processes (process r
    takes every world-th example from the r-th), and how one process's share is laid out for a forward.

    By default a micro-batch holds `examples` examples. With a token budget (`tokens`), it holds the longest
    run of the batch's examples, longest first, whose every share fits the budget: rows x padded width, or
    the tokens themselves when `packed` (at least one example, however long). Either way every example is
    in exactly one micro-batch and the loss weighs it the same, so the gradient is the same up to float error.

    With `buckets` (under torch.compile), every share is laid out in one of at most `buckets` shapes, so that
    the compiler compiles at most that many times: a padded share is widened to a multiple of
    max_length / buckets and topped up with throwaway rows to the rows its width allows; a packed row is
    lengthened to a multiple of its capacity (the token budget, or all the rows a share may hold at
    max_length, whichever is smaller) / buckets and its boundaries list is padded to the most examples a
    share can hold. A micro-batch then holds at most `batch_size` examples under a token budget too, which
    bounds inference's forwards as a training batch bounds its own.
    """

    examples: int
    batch_size: int
    max_length: int
    tokens: int | None = None
    packed: bool = False
    buckets: int | None = None

    def _share_rows(self, world: int) -> int:
        return -(-(self.batch_size if self.tokens else self.examples) // world)

    def _padded_width(self, width: int) -> int:
        if self.buckets is None:
            return width
        return bucket(width, -(-self.max_length // self.buckets), self.max_length)

    def _packed_capacity(self, world: int) -> int:
        rows_at_max_length = self._share_rows(world) * self.max_length
        share = min(self.tokens, rows_at_max_length) if self.tokens else rows_at_max_length
        return max(share, self.max_length)

    def _cost(self, lengths: np.ndarray, world: int) -> int:
        """The largest share's tokens as laid out (`lengths` sorted longest first)."""
        shares = [lengths[r::world] for r in range(min(world, len(lengths)))]
        if self.packed:
            return max(int(s.sum()) for s in shares)
        return max(len(s) * self._padded_width(int(s[0])) for s in shares)

    def split(self, batch: np.ndarray, lengths: np.ndarray, world: int) -> list[np.ndarray]:
        """The micro-batches of `batch` (example indices; `lengths` are theirs), in the order they run."""
        if self.tokens is None:
            return [batch[i : i + self.examples] for i in range(0, len(batch), self.examples)]
        order = np.argsort(-np.asarray(lengths), kind="stable")
        batch, lengths = batch[order], np.asarray(lengths)[order]
        most = self.batch_size * world if self.buckets else len(batch)
        micros, start = [], 0
        for end in range(2, len(batch) + 1):
            if end - start > most or self._cost(lengths[start:end], world) > self.tokens:
                micros.append(batch[start : end - 1])
                start = end - 1
        micros.append(batch[start:])
        return micros

    def layout(self, token_ids: Sequence[Sequence[int]], pad_id: int, world: int) -> dict:
        """The model inputs (host tensors) of one process's share; the first len(token_ids) rows of the
        model's output belong to its examples, any further rows are to be dropped."""
        if self.packed:
            if self.buckets is None:
                return pack(token_ids, pad_id, self.max_length)
            capacity = self._packed_capacity(world)
            step = -(-capacity // self.buckets)
            length = bucket(sum(len(t) for t in token_ids), step, capacity)
            # The pad tail is a segment too, up to one step long.
            return pack(token_ids, pad_id, max(self.max_length, step), length, self._share_rows(world))
        batch = collate(token_ids, pad_id)
        if self.buckets is None:
            return batch
        width = self._padded_width(batch["input_ids"].shape[1])
        rows = self._share_rows(world)
        if self.tokens:
            rows = min(rows, max(1, self.tokens // width))
        return pad_rows(batch, width, rows, pad_id)
