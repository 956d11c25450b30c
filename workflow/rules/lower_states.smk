rule lower_states:
    """The states after the frozen lower blocks of a model with frozen_layers, for every text of a task (all
    seeds and splits): every job of that model on the task reads them instead of running those blocks."""
    wildcard_constraints:
        model=_alternatives(FROZEN_MODELS),
    input:
        splits=lambda wildcards: [
            split_path(split).format(task=wildcards.task, seed=seed) for seed in config["seeds"] for split in SPLITS
        ],
        model=lambda wildcards: base_model_inputs(wildcards.model),
    output:
        layout.lower_states_path(),
    params:
        model_path=lambda wildcards: base_model_path(wildcards.model),
        entry=lambda wildcards: model_entry(wildcards.model),
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
