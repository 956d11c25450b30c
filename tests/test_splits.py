import pandas as pd
import pytest

from w2s.data.splits import SplitError, deduplicate, make_splits

SIZES = {"weak_train": 20, "strong_train": 20, "val": 10, "test": 10}


def corpus(n=100, pos_frac=0.5):
    n_pos = int(n * pos_frac)
    return pd.DataFrame({"text": [f"example number {i}" for i in range(n)], "label": [1] * n_pos + [0] * (n - n_pos)})


def test_splits_are_disjoint_sized_and_balanced():
    splits = make_splits(corpus(), SIZES, seed=0, balance=True)
    ids = [set(s["id"]) for s in splits.values()]
    assert sum(map(len, ids)) == len(set().union(*ids)) == 60
    for name, df in splits.items():
        assert len(df) == SIZES[name]
        assert df["label"].mean() == 0.5
        assert list(df.columns) == ["id", "text", "label"]


def test_dedup_merges_whitespace_variants_and_drops_conflicting_labels():
    df = pd.DataFrame({"text": ["a  b", "a b", " c", "c", "d"], "label": [1, 1, 0, 1, 0]})
    out = deduplicate(df)
    assert sorted(out["text"]) == ["a b", "d"]


def test_duplicates_never_cross_splits():
    df = pd.concat([corpus(), corpus()])  # every text twice
    splits = make_splits(df, SIZES, seed=1, balance=False)
    texts = [t for s in splits.values() for t in s["text"]]
    assert len(texts) == len(set(texts))


def test_seed_changes_assignment_but_ids_are_stable():
    a = make_splits(corpus(), SIZES, seed=0, balance=True)
    b = make_splits(corpus(), SIZES, seed=0, balance=True)
    c = make_splits(corpus(), SIZES, seed=1, balance=True)
    assert a["test"].equals(b["test"])
    assert set(a["test"]["id"]) != set(c["test"]["id"])
    by_text = dict(zip(a["test"]["text"], a["test"]["id"]))
    for t, i in zip(c["weak_train"]["text"], c["weak_train"]["id"]):
        assert by_text.get(t, i) == i


def test_too_large_sizes_name_the_fix():
    with pytest.raises(SplitError, match="lower config 'splits' sizes"):
        make_splits(corpus(50), SIZES, seed=0, balance=False)
    with pytest.raises(SplitError, match="each class"):
        make_splits(corpus(100, pos_frac=0.2), SIZES, seed=0, balance=True)
