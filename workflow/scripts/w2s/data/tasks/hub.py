"""Tasks loaded from the Hugging Face hub (as in openai/weak-to-strong), each a pure record formatter."""

from __future__ import annotations

import hashlib
import json
import os
import random
from pathlib import Path

import pandas as pd

from .registry import HubSource, Task, TaskDataError


def record_rng(record: dict) -> random.Random:
    """An rng seeded by the record's content, so a record formats the same way in every run and process.

    Python's hash() is salted per process, so it cannot serve here.
    """
    canonical = json.dumps(record, sort_keys=True, ensure_ascii=False, default=str)
    return random.Random(int.from_bytes(hashlib.sha256(canonical.encode()).digest()[:8], "big"))


def format_boolq(record: dict, rng: random.Random) -> dict:
    question = record["question"].strip()
    if not question.endswith("?"):
        question += "?"
    return {"text": f"Passage: {record['passage'].strip()}\nQuestion: {question}", "label": int(record["answer"])}


def format_sciq(record: dict, rng: random.Random) -> dict:
    correct = record["correct_answer"].strip()
    # A distractor equal to the correct answer would give the same text both labels.
    wrong = [d.strip() for d in (record["distractor1"], record["distractor2"], record["distractor3"])]
    wrong = [d for d in wrong if d and d != correct]
    label = int(not wrong or rng.random() < 0.5)
    answer = correct if label else rng.choice(wrong)
    return {"text": f"Q: {record['question'].strip()} A: {answer}", "label": label}


def format_amazon_polarity(record: dict, rng: random.Random) -> dict:
    return {"text": f"{record['title'].strip()}\n{record['content'].strip()}".strip(), "label": int(record["label"])}


def _none_of_the_above(answer: str) -> bool:
    return answer.strip().lower().startswith("none of the above")


def format_cosmos_qa(record: dict, rng: random.Random) -> dict:
    answers = [record[f"answer{i}"].strip() for i in range(4)]
    correct = answers[record["label"]]
    # "None of the above" means nothing without the other choices, so it is never shown: when it is the
    # correct choice the example shows a wrong answer (label 0), and it is never offered as a wrong answer,
    # where it would be an easy giveaway for label 0.
    wrong = [a for i, a in enumerate(answers) if i != record["label"] and a != correct and not _none_of_the_above(a)]
    label = 0 if _none_of_the_above(correct) else int(rng.random() < 0.5)
    answer = correct if label else rng.choice(wrong)
    text = f"Context: {record['context'].strip()}\nQuestion: {record['question'].strip()}\nAnswer: {answer}"
    return {"text": text, "label": label}


_ASSISTANT_TURN = "\n\nAssistant:"


def _split_shared_context(chosen: str, rejected: str) -> tuple[str, str, str]:
    """(shared conversation, chosen continuation, rejected continuation), cut at the last shared
    assistant turn, so the two continuations start where the responses start to differ."""
    shared = len(os.path.commonprefix([chosen, rejected]))
    cut = chosen.rfind(_ASSISTANT_TURN, 0, shared)
    if cut < 0:
        return "", chosen.strip(), rejected.strip()
    start = cut + len(_ASSISTANT_TURN)
    return chosen[:cut].strip(), chosen[start:].strip(), rejected[start:].strip()


def format_anthropic_hh(record: dict, rng: random.Random) -> dict:
    # openai/weak-to-strong showed one side of the pair, which no model can judge (everything sat at
    # chance). Showing both responses in random order makes "is A the preferred one?" learnable.
    context, chosen, rejected = _split_shared_context(record["chosen"], record["rejected"])
    label = int(rng.random() < 0.5)
    first, second = (chosen, rejected) if label else (rejected, chosen)
    parts = [context, f"Response A: {first}", f"Response B: {second}"]
    return {"text": "\n\n".join(p for p in parts if p), "label": label}


def load_hub_frame(name: str, source: HubSource, raw_path: Path | None = None) -> pd.DataFrame:
    """Pool the labelled splits of a hub dataset into (text, label); `raw_path` is a local copy of it."""
    # datasets takes seconds to import and only hub tasks need it.
    import datasets

    if raw_path is None:
        dataset = datasets.load_dataset(source.path, name=source.config, revision=source.revision)
    else:
        dataset = datasets.load_dataset(str(raw_path), name=source.config)
    missing = [s for s in source.splits if s not in dataset]
    if missing:
        raise TaskDataError(f"task {name}: {source.path} has no split(s) {missing}; it has {sorted(dataset)}")
    rows = [
        source.format(record, record_rng(record))
        for split in source.splits
        for record in dataset[split]
        if source.keep is None or source.keep(record)
    ]
    return pd.DataFrame(rows, columns=["text", "label"])


# n_examples: the documented sizes of the pooled splits.
HUB_TASKS = (
    Task(
        name="boolq",
        description="BoolQ: a Wikipedia passage and a yes/no question; label = the answer is yes.",
        n_examples=9_427 + 3_270,
        source=HubSource(path="google/boolq", splits=("train", "validation"), format=format_boolq),
    ),
    Task(
        name="sciq",
        description="SciQ: a science question with the correct answer or a distractor (50/50); label = correct.",
        n_examples=11_679 + 1_000 + 1_000,
        source=HubSource(path="allenai/sciq", splits=("train", "validation", "test"), format=format_sciq),
    ),
    Task(
        name="amazon_polarity",
        description="Amazon review polarity: review title and body; label = positive.",
        n_examples=3_600_000 + 400_000,
        source=HubSource(path="fancyzhx/amazon_polarity", splits=("train", "test"), format=format_amazon_polarity),
    ),
    Task(
        name="anthropic_hh",
        description="Anthropic HH-RLHF: a conversation and two responses in random order; label = A is preferred.",
        n_examples=160_800 + 8_552,
        source=HubSource(
            path="Anthropic/hh-rlhf",
            splits=("train", "test"),
            format=format_anthropic_hh,
            # An identical pair has no preferred side.
            keep=lambda record: record["chosen"].strip() != record["rejected"].strip(),
        ),
    ),
    Task(
        name="cosmos_qa",
        description="Cosmos QA: a narrative, a question and the correct or a wrong answer; label = correct.",
        n_examples=25_262 + 2_985,
        source=HubSource(
            path="allenai/cosmos_qa",
            # The test split's labels are hidden.
            splits=("train", "validation"),
            format=format_cosmos_qa,
            # The repository holds a loading script, which datasets>=4 refuses to run; the hub's
            # automatic Parquet conversion of it loads without one.
            revision="refs/convert/parquet",
        ),
    ),
)
