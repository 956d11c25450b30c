"""Texts (or text pairs) that the dataset labels directly: sentiment, acceptability, paraphrase, word sense,
entailment and the ETHICS judgement tasks."""

from __future__ import annotations

import random

from .hub import known_label
from .registry import TaskDataError


def format_amazon_polarity(record: dict, rng: random.Random) -> dict:
    return {"text": f"{record['title'].strip()}\n{record['content'].strip()}".strip(), "label": int(record["label"])}


def format_sentence(record: dict, rng: random.Random) -> dict:
    """A single sentence with a binary label: cola (1 = acceptable), sst2 (1 = positive)."""
    return {"text": record["sentence"].strip(), "label": known_label(record, "label", 2)}


def format_twitter_sentiment(record: dict, rng: random.Random) -> dict:
    return {"text": record["text"].strip(), "label": known_label(record, "label", 2)}


def format_paws(record: dict, rng: random.Random) -> dict:
    text = (
        f"Sentence 1: {record['sentence1'].strip()}\nSentence 2: {record['sentence2'].strip()}\n"
        "Do the two sentences mean the same?"
    )
    return {"text": text, "label": known_label(record, "label", 2)}


def format_wic(record: dict, rng: random.Random) -> dict:
    text = (
        f"Sentence 1: {record['sentence1'].strip()}\nSentence 2: {record['sentence2'].strip()}\n"
        f'Does "{record["word"]}" have the same meaning in both sentences?'
    )
    return {"text": text, "label": known_label(record, "label", 2)}


def format_anli(record: dict, rng: random.Random) -> dict:
    # Three classes (entailment 0, neutral 1, contradiction 2); as in EleutherAI/w2s, label = entailment.
    text = (
        f"Premise: {record['premise'].strip()}\nHypothesis: {record['hypothesis'].strip()}\n"
        "Does the premise entail the hypothesis?"
    )
    return {"text": text, "label": int(known_label(record, "label", 3) == 0)}


def format_ethics_deontology(record: dict, rng: random.Random) -> dict:
    text = (
        f"Scenario: {record['scenario'].strip()}\nExcuse: {record['excuse'].strip()}\nIs this a morally valid excuse?"
    )
    return {"text": text, "label": known_label(record, "label", 2)}


def format_ethics_justice(record: dict, rng: random.Random) -> dict:
    text = f"Statement: {record['scenario'].strip()}\nIs this statement just?"
    return {"text": text, "label": known_label(record, "label", 2)}


_VIRTUE_SEPARATOR = "[SEP]"


def format_ethics_virtue(record: dict, rng: random.Random) -> dict:
    # The hub's scenario is "<behaviour> [SEP] <trait>"; EleutherAI/w2s showed it raw, separator token and all.
    behaviour, separator, trait = record["scenario"].partition(_VIRTUE_SEPARATOR)
    if not separator:
        raise TaskDataError(f"ethics virtue scenario without {_VIRTUE_SEPARATOR!r}: {record['scenario'][:80]!r}")
    text = f"Behaviour: {behaviour.strip()}\nTrait: {trait.strip()}\nDoes the behaviour show this trait?"
    return {"text": text, "label": known_label(record, "label", 2)}
