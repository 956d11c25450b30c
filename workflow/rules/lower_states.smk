rule lower_states:
    """The states after the frozen lower blocks of a model with frozen_layers, for every text of a task that
    its jobs read (all seeds; weak_train only for a weak model): they read these instead of running those
    blocks."""
    wildcard_constraints:
        model=_alternatives(FROZEN_MODELS),
    input:
        splits=lambda wildcards: [
            split_path(split).format(task=wildcards.task, seed=seed)
            for seed in config["seeds"]
            for split in lower_states_splits(wildcards.model)
        ],
        model=lambda wildcards: base_model_inputs(wildcards.model),
    output:
        layout.lower_states_path(),
    params:
        model_path=lambda wildcards: base_model_path(wildcards.model),
        entry=lambda wildcards: model_entry(wildcards.model),
    priority: SUPERVISOR_PRIORITY
    threads: model_threads("model")
    resources:
        **model_resources("model"),
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/lower_states/{task}/{model}.log",
    benchmark:
        "benchmarks/jobs/lower_states/{task}/{model}.tsv"
    script:
        "../scripts/compute_lower_states.py"
