rule activations:
    """Frozen pretrained features of one strong model for every strong_train, val and test example of a task
    (all seeds at once), shared by every probe and linear-probe cell."""
    input:
        splits=lambda wildcards: [
            split_path(split).format(task=wildcards.task, seed=seed)
            for seed in config["seeds"]
            for split in STRONG_SPLITS
        ],
        model=lambda wildcards: model_inputs(wildcards.strong, wildcards),
    output:
        layout.activations_path(),
    params:
        model_path=lambda wildcards: model_path(wildcards.strong, wildcards),
        pooling=lambda wildcards: model_entry(wildcards.strong)["pooling"],
        max_length=lambda wildcards: model_entry(wildcards.strong)["max_length"],
        layers=config["activations"]["layers"],
        batch_size=config["activations"]["batch_size"],
    priority: SUPERVISOR_PRIORITY
    threads: model_threads("strong")
    resources:
        **model_resources("strong"),
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/activations/{task}/{strong}.log",
    benchmark:
        "benchmarks/jobs/activations/{task}/{strong}.tsv"
    script:
        "../scripts/extract_activations.py"


rule probe_labels:
    """Weak labels of strong_train and val, filtered or relabelled by a probe on the frozen activations;
    the probe's accuracy against weak labels and ground truth is reported in probe.json (ground truth is
    read for that report only and never written into the label tables)."""
    wildcard_constraints:
        intervention=_alternatives(PROBE_INTERVENTIONS),
    input:
        **split_paths(LABELLED),
        **weak_label_inputs(),
        activations=activations_input,
    output:
        **layout.label_tables(),
        report=layout.probe_report_path(),
    params:
        probe=lambda wildcards: CELLS[wildcards.intervention].entry["probe"],
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/probe_labels/{task}/seed{seed}/{weak}/{strong}/{intervention}.log",
    script:
        "../scripts/probe_labels.py"


rule linear_probe_student:
    """Saliency: a linear probe on the pretrained strong model's frozen activations, fit on strong_train's
    weak labels or ground truth (regularisation chosen on val), in place of a finetuned student."""
    wildcard_constraints:
        intervention=_alternatives(LINEAR_PROBE_INTERVENTIONS),
    input:
        **split_paths(STRONG_SPLITS),
        **weak_label_inputs(),
        activations=activations_input,
    output:
        **layout.training_outputs(layout.student_dir(), "test"),
    params:
        intervention=lambda wildcards: CELLS[wildcards.intervention].record(),
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/linear_probe_student/{task}/seed{seed}/{weak}/{strong}/{intervention}.log",
    script:
        "../scripts/linear_probe_student.py"
