"""Every formatter of the EleutherAI/w2s and HH-RLHF tasks, run on records shaped like the hub's rows
(tests/fixtures/hub/<task>.jsonl): the text it shows and the label it gives."""

import json
import random
from pathlib import Path

import pytest

from w2s.data.tasks import TaskDataError
from w2s.data.tasks.classification import (
    format_anli,
    format_ethics_deontology,
    format_ethics_justice,
    format_ethics_virtue,
    format_paws,
    format_sentence,
    format_twitter_sentiment,
    format_wic,
)
from w2s.data.tasks.multiple_choice import (
    format_dream,
    format_ethics_utilitarianism,
    format_hellaswag,
    format_openbookqa,
    format_piqa,
    format_quail,
    format_quartz,
    format_sciq_with_support,
    format_social_i_qa,
    has_support,
)
from w2s.data.tasks.question_answering import format_mc_taco, format_multirc

FIXTURES = Path(__file__).parent / "fixtures" / "hub"
RNGS = [random.Random(seed) for seed in range(40)]


def fixture(task):
    return [json.loads(line) for line in (FIXTURES / f"{task}.jsonl").read_text().splitlines()]


# --- labelled directly by the dataset -------------------------------------------------------------


def test_anli_labels_entailment_against_neutral_and_contradiction():
    records = fixture("anli-r2")
    outs = [format_anli(r, random.Random(0)) for r in records]
    assert [o["label"] for o in outs] == [1, 0, 0]  # hub labels 0 (entailment), 1, 2
    assert outs[0]["text"] == (
        f"Premise: {records[0]['premise']}\nHypothesis: {records[0]['hypothesis']}\n"
        "Does the premise entail the hypothesis?"
    )


@pytest.mark.parametrize("task", ["cola", "sst2"])
def test_single_sentence_tasks_show_the_sentence_stripped(task):
    for record in fixture(task):
        out = format_sentence(record, random.Random(0))
        assert out == {"text": record["sentence"].strip(), "label": record["label"]}


def test_twitter_sentiment_shows_the_tweet():
    for record in fixture("twitter-sentiment"):
        assert format_twitter_sentiment(record, random.Random(0)) == {
            "text": record["text"].strip(),
            "label": record["label"],
        }


def test_paws_and_wic_show_both_sentences():
    for record in fixture("paws"):
        out = format_paws(record, random.Random(0))
        assert out["text"].startswith(f"Sentence 1: {record['sentence1']}\nSentence 2: {record['sentence2']}\n")
        assert out["label"] == record["label"]
    for record in fixture("wic"):
        out = format_wic(record, random.Random(0))
        assert out["text"] == (
            f"Sentence 1: {record['sentence1']}\nSentence 2: {record['sentence2']}\n"
            f'Does "{record["word"]}" have the same meaning in both sentences?'
        )
        assert out["label"] == record["label"]


def test_ethics_deontology_and_justice_keep_the_dataset_label():
    for record in fixture("ethics-deontology"):
        out = format_ethics_deontology(record, random.Random(0))
        assert f"Scenario: {record['scenario']}\nExcuse: {record['excuse']}\n" in out["text"]
        assert out["label"] == record["label"]
    for record in fixture("ethics-justice"):
        out = format_ethics_justice(record, random.Random(0))
        assert out["text"].startswith(f"Statement: {record['scenario']}\n") and out["label"] == record["label"]


def test_ethics_virtue_splits_behaviour_and_trait_at_the_separator():
    record = fixture("ethics-virtue")[1]
    out = format_ethics_virtue(record, random.Random(0))
    assert out == {
        "text": "Behaviour: Jill wore a new style of distinctive clothes each six months for decades.\n"
        "Trait: fashionable\nDoes the behaviour show this trait?",
        "label": 1,
    }
    with pytest.raises(TaskDataError, match="SEP"):
        format_ethics_virtue({"label": 1, "scenario": "no separator here"}, random.Random(0))


def test_multirc_and_mc_taco_judge_the_given_answer():
    for record in fixture("multirc"):
        out = format_multirc(record, random.Random(0))
        assert (
            out["text"] == f"Passage: {record['paragraph']}\nQuestion: {record['question']}\nAnswer: {record['answer']}"
        )
        assert out["label"] == record["label"]
    for record in fixture("mc_taco"):
        out = format_mc_taco(record, random.Random(0))
        assert out["text"] == f"{record['sentence']}\nQuestion: {record['question']}\nAnswer: {record['answer']}"
        assert out["label"] == record["label"]


@pytest.mark.parametrize(
    "formatter, record",
    [
        (format_sentence, {"idx": 7, "sentence": "hidden", "label": -1}),
        (format_multirc, fixture("multirc")[0] | {"label": -1}),
        (format_hellaswag, fixture("hellaswag")[0] | {"label": ""}),
        (format_piqa, fixture("piqa")[0] | {"label": -1}),
        (format_anli, fixture("anli-r2")[0] | {"label": -1}),
    ],
)
def test_a_hidden_test_label_is_an_error_not_a_class(formatter, record):
    with pytest.raises(TaskDataError, match="hidden"):
        formatter(record, random.Random(0))


# --- multiple choice: correct answer or a wrong one, 50/50 ------------------------------------------


def _answer_after(text, marker):
    return text.rsplit(marker, 1)[1]


MULTIPLE_CHOICE = {
    # task: (formatter, record -> (correct answer, every answer), marker before the shown answer)
    "dream": (format_dream, lambda r: (r["answer"], r["choice"]), "\nAnswer: "),
    "hellaswag": (format_hellaswag, lambda r: (r["endings"][int(r["label"])], r["endings"]), "\nBest ending: "),
    "openbookqa": (
        format_openbookqa,
        lambda r: (r["choices"]["text"][r["choices"]["label"].index(r["answerKey"])], r["choices"]["text"]),
        "\nAnswer: ",
    ),
    "piqa": (format_piqa, lambda r: ((r["sol1"], r["sol2"])[r["label"]], [r["sol1"], r["sol2"]]), "\nSolution: "),
    "quail": (format_quail, lambda r: (r["answers"][r["correct_answer_id"]], r["answers"]), "\nAnswer: "),
    "quartz": (
        format_quartz,
        lambda r: (r["choices"]["text"][r["choices"]["label"].index(r["answerKey"])], r["choices"]["text"]),
        "\nAnswer: ",
    ),
    "social_i_qa": (
        format_social_i_qa,
        lambda r: (
            [r["answerA"], r["answerB"], r["answerC"]][int(r["label"]) - 1],
            [r["answerA"], r["answerB"], r["answerC"]],
        ),
        "\nAnswer: ",
    ),
}


@pytest.mark.parametrize("task", sorted(MULTIPLE_CHOICE))
def test_multiple_choice_shows_a_choice_and_labels_whether_it_is_correct(task):
    formatter, answers_of, marker = MULTIPLE_CHOICE[task]
    seen = set()
    for record in fixture(task):
        correct, answers = answers_of(record)
        for rng in RNGS:
            out = formatter(record, rng)
            shown = _answer_after(out["text"], marker)
            assert shown in [a.strip() for a in answers]
            assert (shown == correct.strip()) == (out["label"] == 1)
            seen.add(out["label"])
    assert seen == {0, 1}


def test_multiple_choice_texts_differ_only_in_the_shown_answer():
    """Everything before the answer is the same for both labels: nothing but the answer can tell them apart."""
    for task, (formatter, _, marker) in MULTIPLE_CHOICE.items():
        for record in fixture(task):
            prefixes = {formatter(record, rng)["text"].rsplit(marker, 1)[0] for rng in RNGS}
            assert len(prefixes) == 1, task


def test_dream_shows_the_dialogue_and_question():
    record = fixture("dream")[0]
    out = format_dream(record, random.Random(3))
    assert out["text"].startswith("Dialogue:\n" + "\n".join(record["dialogue"]) + f"\nQuestion: {record['question']}\n")


def test_openbookqa_never_shows_the_answer_key():
    """EleutherAI/w2s showed the key's letter for label 1 and a choice's text for label 0."""
    for record in fixture("openbookqa"):
        for rng in RNGS:
            out = format_openbookqa(record, rng)
            shown = _answer_after(out["text"], "\nAnswer: ")
            assert shown in record["choices"]["text"] and shown != record["answerKey"]
            for letter in record["choices"]["label"]:
                assert f"{letter})" not in out["text"] and f"\n{letter} " not in out["text"]


def test_openbookqa_rejects_an_answer_key_that_is_no_choice():
    record = fixture("openbookqa")[0] | {"answerKey": "E"}
    with pytest.raises(TaskDataError, match="'E'"):
        format_openbookqa(record, random.Random(0))


def test_wrong_answer_equal_to_the_correct_one_is_never_shown_as_wrong():
    record = fixture("quail")[0] | {"answers": ["goes back to Michigan", "goes back to Michigan ", "", " "]}
    assert {format_quail(record, rng)["label"] for rng in RNGS} == {1}


def test_sciq_with_support_shows_the_passage_and_skips_records_without_one():
    records = fixture("sciq")
    assert [has_support(r) for r in records] == [True, True, False]
    record = records[1]
    for rng in RNGS:
        out = format_sciq_with_support(record, rng)
        prefix = f"Passage: {record['support']}\nQ: {record['question']} A: "
        assert out["text"].startswith(prefix) and "Bob" not in out["text"]
        answer = out["text"][len(prefix) :]
        assert (answer == record["correct_answer"]) == (out["label"] == 1)


def test_ethics_utilitarianism_claims_one_of_two_scenarios():
    seen = set()
    for record in fixture("ethics-utilitarianism"):
        for rng in RNGS:
            out = format_ethics_utilitarianism(record, rng)
            lines = out["text"].split("\n")
            assert lines[0] == "Which is more pleasant?"
            options = {lines[1][len("1) ") :], lines[2][len("2) ") :]}
            assert options == {record["baseline"], record["less_pleasant"]}
            claimed = lines[1 + int(lines[3][len("Answer: ") :]) - 1][len("1) ") :]
            assert out["label"] == int(claimed == record["baseline"])
            seen.add((out["label"], lines[1].endswith(record["baseline"])))
    # Both labels with the pleasant scenario in either place.
    assert seen == {(0, True), (0, False), (1, True), (1, False)}


def _correct_example(formatter, record):
    return next(out for out in (formatter(record, rng) for rng in RNGS) if out["label"] == 1)


def test_multiple_choice_full_texts():
    hellaswag = fixture("hellaswag")[0]
    assert _correct_example(format_hellaswag, hellaswag)["text"] == (
        f"Context: {hellaswag['ctx']}\nEndings:\n"
        + "\n".join(f"- {e.strip()}" for e in hellaswag["endings"])
        + "\nBest ending: , the man continues removing the snow on his car."
    )
    obqa = fixture("openbookqa")[0]
    assert _correct_example(format_openbookqa, obqa)["text"] == (
        "Question: The sun is responsible for\nChoices:\n"
        + "\n".join(f"- {t}" for t in obqa["choices"]["text"])
        + "\nAnswer: plants sprouting, blooming and wilting"
    )
    piqa = fixture("piqa")[0]
    assert _correct_example(format_piqa, piqa)["text"] == f"Goal: {piqa['goal']}\nSolution: Pour it into a jar"
    quail = fixture("quail")[0]
    assert _correct_example(format_quail, quail)["text"] == (
        f"Passage: {quail['context']}\nQuestion: {quail['question']}\nAnswer: goes back to Michigan"
    )
    quartz = fixture("quartz")[0]
    assert _correct_example(format_quartz, quartz)["text"] == (
        f"Passage: {quartz['para']}\nQuestion: {quartz['question']}\nAnswer: faster"
    )
    siqa = fixture("social_i_qa")[1]
    assert _correct_example(format_social_i_qa, siqa)["text"] == (
        f"Context: {siqa['context']}\nQuestion: {siqa['question']}\n"
        "Choices:\n- disagree with Jan\n- get to work\n- argue with the assignments\nAnswer: get to work"
    )
