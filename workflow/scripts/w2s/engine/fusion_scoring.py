"""What dynamic logit fusion reads from its three decoders (the strong model L, the weak model S and the weak
model's expert S_ft): full-vocabulary next-token log-probabilities at the positions of each label word after
each prompt, for batches of prompts.

The three models share one tokenizer (checked by `check_shared_vocabulary`), so every prompt is encoded once
and every model reads the same token ids, padded on the left as w2s.engine.lm does: each row's result is the
one it would get alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import PreTrainedTokenizerBase

from w2s.engine.batching import sorted_batches
from w2s.engine.lm import CausalLM, leading_special_ids


class VocabularyMismatchError(ValueError):
    pass


def check_shared_vocabulary(
    weak: str, weak_tokenizer: PreTrainedTokenizerBase, strong: str, strong_tokenizer: PreTrainedTokenizerBase
) -> None:
    """Fusion adds the weak model's logit shift to the strong model's token by token: both tokenizers must
    map the same strings to the same ids and start a prompt with the same special tokens."""
    weak_vocab, strong_vocab = weak_tokenizer.get_vocab(), strong_tokenizer.get_vocab()
    fix = (
        "choose a weak model of the strong model's family, with its tokenizer (e.g. SmolLM2-135M weak, "
        "SmolLM2-1.7B strong), or remove the fusion interventions"
    )
    if weak_vocab != strong_vocab:
        differ = len(set(weak_vocab.items()) ^ set(strong_vocab.items()))
        raise VocabularyMismatchError(
            f"dynamic logit fusion adds the shift of weak model {weak!r}'s next-token logits to strong model "
            f"{strong!r}'s, token by token, so they must share one vocabulary; but {weak!r} has {len(weak_vocab)} "
            f"tokens and {strong!r} {len(strong_vocab)}, and {differ} (token, id) pairs are not in both; {fix}"
        )
    if leading_special_ids(weak_tokenizer) != leading_special_ids(strong_tokenizer):
        raise VocabularyMismatchError(
            f"weak model {weak!r} starts a prompt with token ids {leading_special_ids(weak_tokenizer)} and strong "
            f"model {strong!r} with {leading_special_ids(strong_tokenizer)}, but dynamic logit fusion feeds them "
            f"the same token ids; {fix}"
        )


@dataclass(frozen=True)
class AnswerBatch:
    prompts: np.ndarray  # positions in the list of prompts
    # One array per label word: (models, prompts, tokens of the word, vocabulary), teacher-forced log-probs
    # (position t predicts the word's token t; position 0, the answer position, is every word's).
    per_word: list[np.ndarray]


@torch.inference_mode()
def answer_logprobs(
    models: Sequence[CausalLM], prompts: Sequence[str], words: Sequence[str], batch_size: int
) -> Iterator[AnswerBatch]:
    """For batches of `batch_size` prompts, every model's next-token log-probabilities over the shared
    vocabulary at the positions of every label word after the prompt.

    The shared vocabulary is the first tokenizer's tokens: a model whose output layer is padded beyond them
    (Qwen2.5's sizes differ by model) has its distribution renormalised over them. A prompt is read once per
    distinct prefix of the words (all their tokens but the last), as w2s.engine.lm scores words.
    """
    reader = models[0]
    vocabulary = len(reader.tokenizer)
    word_ids = reader.word_tokens(words)
    empty = [w for w, ids in zip(words, word_ids) if not ids]
    if empty:
        raise ValueError(f"label words {empty} encode to no tokens")
    prefixes = sorted({tuple(ids[:-1]) for ids in word_ids})
    keep = max(len(p) for p in prefixes) + 1
    prompt_ids = reader.encode_prompts(prompts)
    for batch in sorted_batches([len(p) for p in prompt_ids], batch_size):
        rows = [prompt_ids[i] + list(prefix) for i in batch for prefix in prefixes]
        read = []
        for lm in models:
            logprobs = lm.next_token_logprobs(rows, keep)
            if logprobs.shape[-1] < vocabulary:
                raise ValueError(
                    f"{lm.model.config.name_or_path} predicts {logprobs.shape[-1]} tokens, fewer than the "
                    f"{vocabulary} of the shared tokenizer"
                )
            read.append(torch.log_softmax(logprobs[..., :vocabulary], dim=-1).cpu().numpy())
        # (models, prompts, prefixes, positions, vocabulary): the rows were laid out prompt by prompt.
        by_prefix = np.stack(read).reshape(len(models), len(batch), len(prefixes), keep, vocabulary)
        per_word = [by_prefix[:, :, prefixes.index(tuple(ids[:-1])), keep - len(ids) :] for ids in word_ids]
        yield AnswerBatch(batch, per_word)
