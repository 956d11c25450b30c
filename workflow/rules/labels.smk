rule student_labels:
    """The labels a student trains and selects on: some model's soft predictions on strong_train and val
    (the weak model's; for strong-to-strong the previous student's; for bootstrap the last intermediate
    model's). No ground-truth column is written, so none can reach the student."""
    wildcard_constraints:
        intervention=_alternatives(PREDICTION_LABEL_INTERVENTIONS),
    input:
        unpack(label_predictions),
        **split_paths(LABELLED),
    output:
        **layout.label_tables(),
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/student_labels/{task}/seed{seed}/{weak}/{strong}/{intervention}.log",
    script:
        "../scripts/student_labels.py"


rule confident_labels:
    """The weak labels of strong_train, only the `keep` fraction furthest from 1/2 (confident-label
    filtering), and every weak label of val."""
    wildcard_constraints:
        intervention=_alternatives(CONFIDENT_INTERVENTIONS),
    input:
        **split_paths(LABELLED),
        **weak_label_inputs(),
    output:
        **layout.label_tables(),
    params:
        keep=lambda wildcards: CELLS[wildcards.intervention].entry["confident"]["keep"],
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/confident_labels/{task}/seed{seed}/{weak}/{strong}/{intervention}.log",
    script:
        "../scripts/confident_labels.py"


rule ensemble_labels:
    """The mean soft label of several weak supervisors (weak models and seed replicas) on strong_train and val."""
    wildcard_constraints:
        intervention=_alternatives(ENSEMBLE_INTERVENTIONS),
    input:
        **split_paths(LABELLED),
        members=lambda wildcards: [path for member in ensemble_member_files(wildcards) for path in member.values()],
    output:
        **layout.label_tables(),
    params:
        members=ensemble_member_files,
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/ensemble_labels/{task}/seed{seed}/{weak}/{strong}/{intervention}.log",
    script:
        "../scripts/ensemble_labels.py"


rule bootstrap_step:
    """One intermediate model of a bootstrap chain (weak -> intermediate(s) -> strong): trained on the previous
    step's soft predictions for strong_train and val, it relabels them for the next step. Shared by every
    strong model."""
    wildcard_constraints:
        intervention=_alternatives(BOOTSTRAP_INTERVENTIONS),
    input:
        unpack(bootstrap_step_labels),
        **split_paths(STRONG_SPLITS),
        model=lambda wildcards: model_inputs(bootstrap_alias(wildcards), wildcards),
    output:
        **layout.training_outputs(layout.bootstrap_dir(), "strong_train", "val", "test"),
    params:
        **training_params(bootstrap_alias),
        intervention=lambda wildcards: CELLS[wildcards.intervention].record(),
    priority: SUPERVISOR_PRIORITY
    threads: model_threads(bootstrap_alias)
    resources:
        **model_resources(bootstrap_alias),
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/bootstrap_step/{task}/seed{seed}/{weak}/{intervention}/step{step}.log",
    benchmark:
        "benchmarks/jobs/bootstrap_step/{task}/seed{seed}/{weak}/{intervention}/step{step}.tsv"
    script:
        "../scripts/bootstrap_step.py"
