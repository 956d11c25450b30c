import copy
import re
from pathlib import Path

import pytest
import yaml

from w2s.config import ConfigError, load_schema, validate_config
from w2s.data.tasks import TASKS

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
    assert cfg["models"]["minilm_l2"]["pooling"] == "auto"
    assert cfg["models"]["minilm_l2"]["lora"]["enabled"] is False


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
                r"it takes alpha_max, warmup_frac "
                r"\(other keys allowed: bootstrap, confident, conflict, debate, ensemble, fusion, loss, probe, prompt, "
                r"s2s, saliency, strong_models, weak_models\)"
            ),
        ),
        (
            lambda c: c["interventions"]["xent"].update(strong_models=["mpnet", "gpt9"]),
            r"'interventions.xent.strong_models\[1\]': model alias 'gpt9' is not defined under 'models'",
        ),
        (
            lambda c: c["interventions"]["s2s"].update(weak_models=["mpnet_l4"]),
            r"'interventions.s2s.weak_models': \['mpnet_l4'\] run this strong-to-strong chain, but its starting cell "
            r"'xent' does not run with them",
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


# What Snakemake 9 hands over for `--config` values on top of config/config.yaml, as printed from the
# `config` of a dry run: list and mapping items arrive as strings (`seeds=[0]`, `seeds="[0]"` and
# `seeds=[ 0 ]` all give ['0']), a bare number as a number, a bare true as the string 'true'.
COMMAND_LINE_VALUES = [
    ("seeds=[0]", lambda c: c.update(seeds=["0"]), lambda c: c["seeds"] == [0]),
    ("seeds=[0, 1]", lambda c: c.update(seeds=["0", "1"]), lambda c: c["seeds"] == [0, 1]),
    ("seeds=0", lambda c: c.update(seeds=0), lambda c: c["seeds"] == [0]),
    ("tasks=tweets", lambda c: c.update(tasks="tweets"), lambda c: c["tasks"] == ["tweets"]),
    ("hub_offline=true", lambda c: c.update(hub_offline="true"), lambda c: c["hub_offline"] is True),
    (
        "splits={test: 50, balance: false}",
        lambda c: c["splits"].update(test="50", balance="false"),
        lambda c: (c["splits"]["test"], c["splits"]["balance"]) == (50, False),
    ),
    (
        "models={mpnet: {head_lr: null, epochs: 1.5}}",
        lambda c: c["models"]["mpnet"].update(head_lr="null", epochs="1.5"),
        lambda c: (c["models"]["mpnet"]["head_lr"], c["models"]["mpnet"]["epochs"]) == (None, 1.5),
    ),
    (
        "interventions={logconf: {alpha_max: 0.3}, window: {radius: 0.2}}",
        lambda c: (
            c["interventions"]["logconf"].update(alpha_max="0.3") or c["interventions"]["window"].update(radius="0.2")
        ),
        lambda c: (c["interventions"]["logconf"]["alpha_max"], c["interventions"]["window"]["radius"]) == (0.3, 0.2),
    ),
    (
        "activations={layers: null}",
        lambda c: c.update(activations={"layers": "null"}),
        lambda c: c["activations"]["layers"] is None,
    ),
    (
        "activations={layers: 3}",
        lambda c: c.update(activations={"layers": "3"}),
        lambda c: c["activations"]["layers"] == [3],
    ),
    (
        "activations={layers: [3, 4]}",
        lambda c: c.update(activations={"layers": ["3", "4"]}),
        lambda c: c["activations"]["layers"] == [3, 4],
    ),
]


@pytest.mark.parametrize("given, mutate, check", COMMAND_LINE_VALUES, ids=[v[0] for v in COMMAND_LINE_VALUES])
def test_command_line_strings_are_read_as_the_schema_wants(given, mutate, check):
    cfg = default_config()
    mutate(cfg)
    assert check(validate_config(cfg)), given


def test_strings_stay_strings_where_the_schema_allows_a_string():
    cfg = default_config()
    cfg["models"]["mpnet"].update(path="123", lora={"target_modules": "all-linear"})
    validate_config(cfg)
    assert cfg["models"]["mpnet"]["path"] == "123"
    assert cfg["models"]["mpnet"]["lora"]["target_modules"] == "all-linear"
    assert cfg["interventions"]["window"]["radius"] == "midweak"


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c.update(seeds="x"), r"'seeds': 'x' is not of type 'array'"),
        (lambda c: c["splits"].update(test="5.5"), r"'splits.test': '5.5' is not of type 'integer'"),
        (lambda c: c.update(hub_offline="yes"), r"'hub_offline': 'yes' is not of type 'boolean'"),
    ],
)
def test_strings_that_read_two_ways_or_none_are_left_to_the_validator(mutate, expected):
    cfg = default_config()
    mutate(cfg)
    with pytest.raises(ConfigError, match=expected):
        validate_config(cfg)


@pytest.mark.parametrize(
    "mutate, key",
    [
        (lambda c: c["interventions"].update({"a/b": {}}), "interventions.a/b"),
        (lambda c: c["interventions"].update({"..": {}}), "interventions..."),
        (lambda c: c["models"].update({".hidden": {"path": "org/model"}}), "models..hidden"),
    ],
)
def test_names_that_become_result_folders_must_be_safe_path_segments(mutate, key):
    cfg = default_config()
    mutate(cfg)
    with pytest.raises(
        ConfigError, match=re.escape(f"config key '{key}': ") + r".* is not a safe name; .*letters, digits"
    ):
        validate_config(cfg)


def test_task_names_are_safe_path_segments():
    """Tasks must be registry names (checked), so the registry must hold safe names only."""
    pattern = load_schema()["definitions"]["name"]["pattern"]
    assert all(re.fullmatch(pattern, task) for task in TASKS)


def test_a_local_directory_cannot_be_combined_with_an_offline_package(tmp_path):
    for path in ("/no/such/model", str(tmp_path)):
        cfg = default_config()
        cfg["models"]["mpnet"]["path"] = path
        message = (
            f"'models.mpnet.path': local directory '{path}' cannot be combined with offline_package "
            "'all-mpnet-base-v2', which would be loaded instead; remove offline_package"
        )
        with pytest.raises(ConfigError, match=re.escape(message)):
            validate_config(cfg)
    # A hub id beside the package is how the default config lets users switch to the hub.
    assert validate_config(default_config())["models"]["mpnet"]["path"] == "sentence-transformers/all-mpnet-base-v2"


def test_probe_parameters_are_checked_against_the_points_the_probe_is_fit_on():
    cfg = default_config()
    cfg["splits"].update(strong_train=128, val=64)  # 192 points
    cfg["interventions"]["knn_filter"]["probe"]["k"] = 191
    validate_config(cfg)
    cfg = default_config()
    cfg["splits"].update(strong_train=128, val=64)
    cfg["interventions"]["knn_filter"]["probe"]["k"] = 5000
    cfg["interventions"]["logreg_relabel"]["probe"]["n_folds"] = 193
    with pytest.raises(ConfigError) as info:
        validate_config(cfg)
    assert (
        "config key 'interventions.knn_filter.probe.k': 5000 neighbours, but the probe is fit on strong_train + val "
        "= 192 points and leaves each point out of its own neighbours; set k to at most 191"
    ) in str(info.value)
    assert "'interventions.logreg_relabel.probe.n_folds': 193 folds" in str(info.value)


def test_a_probes_default_k_is_checked_too():
    cfg = default_config()
    cfg["splits"].update(strong_train=20, val=20)
    del cfg["interventions"]["topo_filter"]["probe"]["k"]  # the probe's default, 50
    with pytest.raises(ConfigError, match=r"'interventions.topo_filter.probe.k': 50 neighbours.*at most 39"):
        validate_config(cfg)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (
            lambda c: c["models"]["mpnet"].update(lora={"enabled": True}),
            "'models.mpnet.frozen_layers': cannot be combined with lora",
        ),
        (
            lambda c: c["models"]["mpnet"].update(generative={}),
            "'models.mpnet.frozen_layers': cannot be combined with generative",
        ),
        (
            lambda c: c["interventions"].update(zeroshot={"prompt": {"shots": 0}}),
            "'interventions.zeroshot': a prompt cell runs ['mpnet'], which have frozen_layers",
        ),
        (
            lambda c: c["interventions"].update(conflicted={"conflict": {"task": "imdb", "size": 8}}),
            "'interventions.conflicted.conflict': the conflict task's texts have no lower states of ['mpnet']",
        ),
    ],
)
def test_frozen_layers_are_refused_where_the_states_cannot_serve(mutate, message):
    cfg = default_config()
    cfg["models"]["mpnet"]["frozen_layers"] = 10
    validate_config(copy.deepcopy(cfg))
    mutate(cfg)
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config(cfg)


def test_frozen_layers_pass_with_models_of_their_own_for_the_cells_that_need_text():
    cfg = default_config()
    cfg["models"]["mpnet"]["frozen_layers"] = 10
    cfg["models"]["mpnet_full"] = {**cfg["models"]["mpnet"], "frozen_layers": None}
    cfg["interventions"]["conflicted"] = {"conflict": {"task": "imdb", "size": 8}, "strong_models": ["mpnet_full"]}
    validate_config(cfg)
