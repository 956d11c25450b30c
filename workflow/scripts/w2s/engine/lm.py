"""A decoder language model that reads, scores and writes text: the summed log-probability of continuations
(label words) after prompts, and batched generation.

Rows are padded on the left and numbered by the attention mask, so that every row ends at the same column:
the positions whose next-token distributions are read (or extended by generation) line up across a batch,
and each row's result is the one it would get alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from w2s.engine.batching import collate, sorted_batches
from w2s.engine.modeling import ModelSpec, hub_errors, is_decoder, load_tokenizer, mask_positions, pretrained_kwargs


class NotADecoderError(ValueError):
    pass


def leading_special_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """The ids the tokenizer puts before any text (a BOS token for Llama-style models, none for GPT-2).
    Whatever it appends (BERT-style [SEP]) is left out: a prompt must end where its text ends."""
    plain = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start])
    return []


@dataclass
class CausalLM:
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    device: torch.device

    @classmethod
    def load(cls, spec: ModelSpec, device: str | None = None) -> CausalLM:
        """The decoder of `spec` with its language-model head, frozen, in fp32 (bf16 autocast on a GPU)."""
        source = pretrained_kwargs(spec.path)
        with hub_errors(spec):
            config = AutoConfig.from_pretrained(spec.path, **source)
        if not is_decoder(config):
            raise NotADecoderError(
                f"model {spec.alias!r} ({spec.path}) is not a decoder language model (model type "
                f"{config.model_type!r}, architectures {config.architectures}); prompting and generation need a "
                "causal LM such as GPT-2, Llama, Qwen2 or the offline SmolLM2-135M-Instruct"
            )
        dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        with hub_errors(spec):
            model = AutoModelForCausalLM.from_pretrained(spec.path, dtype=torch.float32, **source)
        model.to(dev).eval().requires_grad_(False)
        return cls(model, load_tokenizer(spec), dev)

    def _forward(self, batch: dict[str, torch.Tensor], logits_to_keep: int) -> torch.Tensor:
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            out = self.model(
                **batch, position_ids=mask_positions(batch["attention_mask"]), logits_to_keep=logits_to_keep
            )
        return torch.log_softmax(out.logits.float(), dim=-1)

    def truncate(self, texts: Sequence[str], max_tokens: int) -> list[str]:
        """Each text cut to its first `max_tokens` tokens (as text), so that a template around it stays whole."""
        if not texts:
            return []
        ids = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        return [t if len(i) <= max_tokens else self.tokenizer.decode(i[:max_tokens]) for t, i in zip(texts, ids)]

    def word_tokens(self, words: Sequence[str]) -> list[list[int]]:
        return [self.tokenizer(w, add_special_tokens=False)["input_ids"] for w in words]

    def encode_prompts(self, prompts: Sequence[str]) -> list[list[int]]:
        start = leading_special_ids(self.tokenizer)
        return [start + ids for ids in self.tokenizer(list(prompts), add_special_tokens=False)["input_ids"]]

    @torch.inference_mode()
    def next_token_logprobs(self, rows: Sequence[Sequence[int]], keep: int) -> torch.Tensor:
        """(len(rows), keep, vocabulary): the next-token log-probabilities at the last `keep` positions of each
        row of token ids, the rows padded on the left."""
        return self._forward(collate([list(r) for r in rows], self.tokenizer.pad_token_id, "left"), keep)

    @torch.inference_mode()
    def continuation_logprobs(
        self, prompts: Sequence[str], continuations: Sequence[str], batch_size: int
    ) -> np.ndarray:
        """(len(prompts), len(continuations)): the summed log-probability of each continuation's tokens right
        after each prompt.

        Prompt and continuation are tokenized apart, the continuation without special tokens, so a label word
        is the same tokens after every prompt (write its leading space into it: " Yes"). A word of several
        tokens scores the sum of their log-probabilities. Words that differ only in their last token (all
        single-token words) are read from one forward pass of the prompt.
        """
        words = self.word_tokens(continuations)
        empty = [c for c, w in zip(continuations, words) if not w]
        if empty:
            raise ValueError(f"continuations {empty} encode to no tokens")
        prefixes = sorted({tuple(w[:-1]) for w in words})
        by_prefix = {p: [j for j, w in enumerate(words) if tuple(w[:-1]) == p] for p in prefixes}
        prompt_ids = self.encode_prompts(prompts)
        rows = [(i, p) for i in range(len(prompt_ids)) for p in prefixes]
        row_ids = [prompt_ids[i] + list(p) for i, p in rows]
        out = np.zeros((len(prompt_ids), len(words)))
        for batch_rows in sorted_batches([len(r) for r in row_ids], batch_size):
            # Left padding: the last len(prefix) + 1 positions of every row predict its words' tokens.
            keep = max(len(rows[r][1]) for r in batch_rows) + 1
            logprobs = self.next_token_logprobs([row_ids[r] for r in batch_rows], keep).cpu()
            for b, r in enumerate(batch_rows):
                i, prefix = rows[r]
                for j in by_prefix[prefix]:
                    word = words[j]
                    steps = logprobs[b, keep - len(word) :]
                    out[i, j] = steps[torch.arange(len(word)), torch.as_tensor(word)].sum().item()
        return out

    @torch.inference_mode()
    def generate(
        self, prompts: Sequence[str], max_new_tokens: int, batch_size: int, temperature: float = 0.0, seed: int = 0
    ) -> list[str]:
        """Each prompt's continuation as text, greedy at temperature 0, else sampled (reproducible given the
        seed, the prompts and the batch size)."""
        transformers.set_seed(seed)
        prompt_ids = self.encode_prompts(prompts)
        pad = self.tokenizer.pad_token_id
        texts: list[str] = [""] * len(prompt_ids)
        sample = temperature > 0
        for batch_rows in sorted_batches([len(p) for p in prompt_ids], batch_size):
            batch = {k: v.to(self.device) for k, v in collate([prompt_ids[r] for r in batch_rows], pad, "left").items()}
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                out = self.model.generate(
                    **batch,
                    max_new_tokens=max_new_tokens,
                    do_sample=sample,
                    temperature=temperature if sample else None,
                    pad_token_id=pad,
                )
            new = out[:, batch["input_ids"].shape[1] :]
            for b, r in enumerate(batch_rows):
                texts[r] = self.tokenizer.decode(new[b], skip_special_tokens=True)
        return texts
