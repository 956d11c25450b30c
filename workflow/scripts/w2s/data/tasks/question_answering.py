"""Question answering with a given answer: the dataset itself labels each (question, answer) pair."""

from __future__ import annotations

import random

from .hub import known_label


def format_boolq(record: dict, rng: random.Random) -> dict:
    question = record["question"].strip()
    if not question.endswith("?"):
        question += "?"
    return {"text": f"Passage: {record['passage'].strip()}\nQuestion: {question}", "label": int(record["answer"])}


def format_multirc(record: dict, rng: random.Random) -> dict:
    # One record per candidate answer; a question has several, any number of them true.
    text = (
        f"Passage: {record['paragraph'].strip()}\nQuestion: {record['question'].strip()}\n"
        f"Answer: {record['answer'].strip()}"
    )
    return {"text": text, "label": known_label(record, "label", 2)}


def format_mc_taco(record: dict, rng: random.Random) -> dict:
    # label: 1 = "yes", the candidate is a plausible answer to the temporal question.
    text = f"{record['sentence'].strip()}\nQuestion: {record['question'].strip()}\nAnswer: {record['answer'].strip()}"
    return {"text": text, "label": known_label(record, "label", 2)}
