"""Which (task, weak, strong, intervention, seed) cells a config plans: every entry with the sweep's models,
or with the models its entry names."""

from w2s.labels.interventions import intervention_cells, sweep, sweep_models


def config(**interventions):
    return {
        "tasks": ["t"],
        "seeds": [0, 1],
        "weak_models": ["w"],
        "strong_models": ["s"],
        "interventions": interventions,
    }


def test_entries_without_model_lists_run_with_every_pair_of_the_sweep():
    cfg = config(a={"loss": "xent"}, b={"loss": "entropy"})
    cfg.update(weak_models=["w1", "w2"], strong_models=["s1", "s2"])
    planned = sweep(cfg, intervention_cells(cfg["interventions"]))
    assert len(planned) == 2 * 2 * 2 * 2
    assert planned[0] == dict(task="t", weak="w1", strong="s1", intervention="a", seed=0)
    assert {(c["weak"], c["strong"]) for c in planned} == {(w, s) for w in ("w1", "w2") for s in ("s1", "s2")}


def test_an_entry_with_its_own_models_runs_with_those_alone():
    cfg = config(
        xent={"loss": "xent"},
        zeroshot={"prompt": {}, "strong_models": ["lm"]},
        fusion={"fusion": {}, "weak_models": ["lm_small"], "strong_models": ["lm"]},
    )
    planned = sweep(cfg, intervention_cells(cfg["interventions"]))
    pairs = {}
    for c in planned:
        pairs.setdefault(c["intervention"], set()).add((c["weak"], c["strong"]))
    assert pairs == {"xent": {("w", "s")}, "zeroshot": {("w", "lm")}, "fusion": {("lm_small", "lm")}}
    assert len(planned) == 3 * 2
    # The models of the whole sweep: the top-level lists first, then what entries add, in order.
    assert sweep_models(cfg) == {"weak_models": ["w", "lm_small"], "strong_models": ["s", "lm"]}


def test_strong_to_strong_iterations_follow_their_entry_s_models():
    cfg = config(
        xent={"loss": "xent", "strong_models": ["lm"]},
        s2s={"s2s": {"from": "xent", "iterations": 2}, "strong_models": ["lm"]},
    )
    planned = sweep(cfg, intervention_cells(cfg["interventions"]))
    assert {(c["intervention"], c["strong"]) for c in planned} == {("xent", "lm"), ("s2s_it1", "lm"), ("s2s_it2", "lm")}
