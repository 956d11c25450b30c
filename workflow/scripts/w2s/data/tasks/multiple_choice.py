"""Multiple-choice records, each turned into one binary example: the question with its correct answer
(label 1) or, with probability 1/2, one of its wrong answers (label 0), drawn by the record's own rng.

One example per record keeps the classes balanced and keeps a question out of two splits at once; a wrong
answer equal to the correct one is never shown as wrong, since it would give the same text both labels.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from .hub import known_label
from .registry import TaskDataError


def pick_answer(correct: str, candidates: Iterable[str], rng: random.Random) -> tuple[str, int]:
    """(answer shown, label): the correct answer, or a different non-empty candidate half of the time."""
    correct = correct.strip()
    wrong = [c.strip() for c in candidates]
    wrong = [c for c in wrong if c and c != correct]
    label = int(not wrong or rng.random() < 0.5)
    return (correct if label else rng.choice(wrong)), label


def _lettered_answer(choices: dict, key: str) -> tuple[str, list[str]]:
    """(correct text, every choice's text) of a record whose choices are {"text": [...], "label": letters}."""
    if key not in choices["label"]:
        raise TaskDataError(f"answer key {key!r} is not among the choice letters {choices['label']}")
    return choices["text"][choices["label"].index(key)], choices["text"]


def _listed(choices: Iterable[str]) -> str:
    return "\n".join(f"- {c.strip()}" for c in choices)


def format_sciq(record: dict, rng: random.Random) -> dict:
    wrong = (record["distractor1"], record["distractor2"], record["distractor3"])
    answer, label = pick_answer(record["correct_answer"], wrong, rng)
    return {"text": f"Q: {record['question'].strip()} A: {answer}", "label": label}


def has_support(record: dict) -> bool:
    return bool(record["support"].strip())


def format_sciq_with_support(record: dict, rng: random.Random) -> dict:
    # Only records with a support passage (see has_support): without one this is plain sciq.
    wrong = (record["distractor1"], record["distractor2"], record["distractor3"])
    answer, label = pick_answer(record["correct_answer"], wrong, rng)
    return {
        "text": f"Passage: {record['support'].strip()}\nQ: {record['question'].strip()} A: {answer}",
        "label": label,
    }


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


def format_dream(record: dict, rng: random.Random) -> dict:
    answer, label = pick_answer(record["answer"], record["choice"], rng)
    dialogue = "\n".join(turn.strip() for turn in record["dialogue"])
    return {"text": f"Dialogue:\n{dialogue}\nQuestion: {record['question'].strip()}\nAnswer: {answer}", "label": label}


def format_hellaswag(record: dict, rng: random.Random) -> dict:
    endings = record["endings"]
    answer, label = pick_answer(endings[known_label(record, "label", len(endings))], endings, rng)
    text = f"Context: {record['ctx'].strip()}\nEndings:\n{_listed(endings)}\nBest ending: {answer}"
    return {"text": text, "label": label}


def format_openbookqa(record: dict, rng: random.Random) -> dict:
    # EleutherAI/w2s showed the answer key's letter for a correct answer and a wrong answer's text otherwise,
    # so the form of the answer gave the label away. Here the answer is always a choice's text, and the
    # choices are listed without their letters.
    correct, choices = _lettered_answer(record["choices"], record["answerKey"])
    answer, label = pick_answer(correct, choices, rng)
    text = f"Question: {record['question_stem'].strip()}\nChoices:\n{_listed(choices)}\nAnswer: {answer}"
    return {"text": text, "label": label}


def format_piqa(record: dict, rng: random.Random) -> dict:
    solutions = (record["sol1"], record["sol2"])
    answer, label = pick_answer(solutions[known_label(record, "label", 2)], solutions, rng)
    return {"text": f"Goal: {record['goal'].strip()}\nSolution: {answer}", "label": label}


def format_quail(record: dict, rng: random.Random) -> dict:
    answers = record["answers"]
    answer, label = pick_answer(answers[known_label(record, "correct_answer_id", len(answers))], answers, rng)
    text = f"Passage: {record['context'].strip()}\nQuestion: {record['question'].strip()}\nAnswer: {answer}"
    return {"text": text, "label": label}


def format_quartz(record: dict, rng: random.Random) -> dict:
    correct, choices = _lettered_answer(record["choices"], record["answerKey"])
    answer, label = pick_answer(correct, choices, rng)
    text = f"Passage: {record['para'].strip()}\nQuestion: {record['question'].strip()}\nAnswer: {answer}"
    return {"text": text, "label": label}


def format_social_i_qa(record: dict, rng: random.Random) -> dict:
    answers = (record["answerA"], record["answerB"], record["answerC"])
    # The hub's label is a string counting from 1.
    answer, label = pick_answer(answers[known_label(record, "label", 3, offset=1)], answers, rng)
    text = (
        f"Context: {record['context'].strip()}\nQuestion: {record['question'].strip()}\n"
        f"Choices:\n{_listed(answers)}\nAnswer: {answer}"
    )
    return {"text": text, "label": label}


def format_ethics_utilitarianism(record: dict, rng: random.Random) -> dict:
    # Two scenarios, the first (baseline) more pleasant than the second; shown in random order with a claim
    # about which is more pleasant; label = the claim is right.
    pleasant, other = record["baseline"].strip(), record["less_pleasant"].strip()
    pleasant_first = rng.random() < 0.5
    first, second = (pleasant, other) if pleasant_first else (other, pleasant)
    label = int(rng.random() < 0.5)
    claimed = 1 if pleasant_first == bool(label) else 2
    text = f"Which is more pleasant?\n1) {first}\n2) {second}\nAnswer: {claimed}"
    return {"text": text, "label": label}
