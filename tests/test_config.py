import copy
from pathlib import Path

import pytest
import yaml

from w2s.config import ConfigError, validate_config

ROOT = Path(__file__).resolve().parents[1]


def default_config():
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


@pytest.mark.parametrize("preset", sorted(p.name for p in (ROOT / "config").glob("*.yaml")))
def test_shipped_configs_are_valid(preset):
    validate_config(yaml.safe_load((ROOT / "config" / preset).read_text()))


def test_defaults_are_filled_in():
    cfg = default_config()
    del cfg["train"]
    validate_config(cfg)
    assert cfg["train"]["warmup_frac"] == 0.1
    assert cfg["models"]["minilm"]["pooling"] == "auto"
    assert cfg["models"]["minilm"]["lora"]["enabled"] is False


def test_entries_read_the_same_whatever_their_key_order_or_explicit_defaults():
    """Rules pass entries as params, and Snakemake compares params as written: a reordered or spelled-out
    entry must not read as a changed one, or every job it touches would rerun."""
    plain = validate_config(default_config())
    spelled = default_config()
    spelled["models"]["mpnet"] = {"pooling": "auto", **dict(reversed(list(spelled["models"]["mpnet"].items())))}
    spelled["interventions"]["knn_filter"]["probe"] = dict(
        reversed(list(spelled["interventions"]["knn_filter"]["probe"].items()))
    )
    spelled = validate_config(spelled)
    for section in ("models", "interventions", "train"):
        assert repr(spelled[section]) == repr(plain[section]), section
    # The order of the interventions themselves is the user's (it orders the plots) and stays.
    assert list(plain["interventions"]) == list(default_config()["interventions"])


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c.update(tasks=["imdb", "nope"]), r"'tasks\[1\]': unknown task 'nope'; known tasks: .*sciq"),
        (lambda c: c.update(strong_models=["gpt9"]), r"'strong_models\[0\]': model alias 'gpt9' is not defined"),
        (lambda c: c["splits"].update(test=-5), r"'splits.test': -5 is less than the minimum of 1"),
        (lambda c: c["splits"].update(weak_train=10**6), r"'splits'.*only \d+ unique examples; lower the split sizes"),
        (lambda c: c.update(seeds=[0, "a"]), r"'seeds\[1\]': 'a' is not of type 'integer'"),
        (lambda c: c["models"]["mpnet"].update(pooling="max"), r"'models.mpnet.pooling': 'max' is not allowed; choose"),
        (lambda c: c["models"]["mpnet"].update(micro_batch_size=5), r"micro_batch_size': 5 must divide batch_size"),
        (lambda c: c["models"]["mpnet"].update(gpu_model="a100"), r"'models.mpnet.gpu_model': 'a100' is a GPU type"),
        (lambda c: c.update(epochs=3), r"'<top level>'.*'epochs' was unexpected.*allowed keys: .*headline_metric"),
        (lambda c: c["interventions"].update(bad={"loss": "mse"}), r"'interventions.bad.loss': 'mse' is not allowed"),
        (
            lambda c: (
                c["models"]["mpnet"].update(path="/no/such/model", offline_package=None)
                or c["models"]["mpnet"].pop("offline_package")
            ),
            r"'models.mpnet.path': local model directory '/no/such/model'",
        ),
        (
            lambda c: c["interventions"].update(lc={"loss": "logconf", "radius": 0.2}),
            (
                r"'interventions.lc': parameter 'radius' is not taken by loss 'logconf'; "
                r"it takes alpha_max, buffer_size, warmup_frac "
                r"\(other keys allowed: bootstrap, ensemble, loss, probe, s2s, saliency\)"
            ),
        ),
        (
            lambda c: c["interventions"].update(p={"loss": "xent", "probe": {"name": "topo", "use": "relabel"}}),
            r"'interventions.p.probe.name': 'topo' is not allowed; choose one of \['knn', 'logreg'\]",
        ),
    ],
)
def test_bad_config_names_the_key_and_what_is_allowed(mutate, expected):
    cfg = copy.deepcopy(default_config())
    mutate(cfg)
    with pytest.raises(ConfigError, match=expected):
        validate_config(cfg)
