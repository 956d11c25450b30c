import numpy as np
import pandas as pd
import pytest

from w2s.data.activations import features_for
from w2s.labels.probe_transform import probe_label_tables, probe_report


def planted(n=200, noise=0.2, seed=0):
    """Two separated clusters; weak labels right except for a flipped `noise` fraction."""
    rng = np.random.default_rng(seed)
    truth = np.repeat([0, 1], n // 2)
    feats = rng.normal(size=(n, 8)) + 4.0 * truth[:, None]
    flipped = rng.random(n) < noise
    weak = np.where(flipped, 1 - truth, truth).astype(float) * 0.8 + 0.1
    ids = [f"e{i}" for i in range(n)]
    table = pd.DataFrame({"id": ids, "text": ids, "soft_label": weak})
    return table, ids, {4: feats.astype(np.float32)}, truth, flipped


def test_features_follow_ids_and_concatenate_layers():
    acts = {2: np.arange(6.0).reshape(3, 2), 5: -np.arange(3.0).reshape(3, 1)}
    out = features_for(pd.Series(["c", "a"]), ["a", "b", "c"], acts)
    assert out.tolist() == [[4.0, 5.0, -2.0], [0.0, 1.0, -0.0]]
    with pytest.raises(ValueError, match="no activations"):
        features_for(pd.Series(["z"]), ["a"], acts)


def test_filter_drops_mostly_flipped_labels_from_train_and_val():
    table, ids, acts, truth, flipped = planted()
    train, val = table.iloc[:150], table.iloc[150:]
    kept_train, kept_val, pred = probe_label_tables(
        train, val, ids, acts, {"name": "knn", "use": "filter", "contamination": 0.2, "k": 10}
    )
    kept = pd.concat([kept_train, kept_val])
    assert len(kept) == 160 and set(kept_val["id"]) <= set(val["id"])
    noise_kept = flipped[[int(i[1:]) for i in kept["id"]]].mean()
    assert noise_kept < flipped.mean() / 2
    assert (kept["soft_label"].to_numpy() == table.set_index("id").loc[kept["id"], "soft_label"].to_numpy()).all()
    report = probe_report(train, val, pred, kept_train, kept_val, pd.Series(truth))
    assert report["probe_acc_vs_gt"] > 0.9
    assert report["dropped_frac_train"] + report["dropped_frac_val"] > 0


def test_relabel_keeps_everything_and_replaces_labels_with_probe_predictions():
    table, ids, acts, truth, flipped = planted()
    train, val = table.iloc[:150], table.iloc[150:]
    new_train, new_val, pred = probe_label_tables(train, val, ids, acts, {"name": "logreg", "use": "relabel"})
    assert len(new_train) == 150 and len(new_val) == 50
    relabelled = np.concatenate([new_train["soft_label"], new_val["soft_label"]])
    assert np.allclose(relabelled, pred)
    assert ((relabelled > 0.5) == truth)[flipped].mean() > 0.8
