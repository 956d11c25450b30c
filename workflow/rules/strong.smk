rule train_ceiling:
    """Strong ceiling: the strong model trained on strong_train ground truth. Shared by every weak model
    and intervention."""
    input:
        **split_paths(STRONG_SPLITS),
        model=lambda wildcards: model_inputs(wildcards.strong, wildcards),
    output:
        **layout.training_outputs(layout.ceiling_dir(), "test"),
    params:
        **training_params("strong"),
    threads: model_threads("strong")
    resources:
        **model_resources("strong"),
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/train_ceiling/{task}/seed{seed}/{strong}.log",
    benchmark:
        "benchmarks/jobs/train_ceiling/{task}/seed{seed}/{strong}.tsv"
    script:
        "../scripts/train_ceiling.py"


rule train_student:
    """Strong student: trained on its cell's labels (with a conflict, also on the conflict task's ground truth)
    under the intervention's loss; predictions on test."""
    wildcard_constraints:
        intervention=_alternatives(PLAIN_STUDENT_INTERVENTIONS),
    input:
        unpack(conflict_inputs),
        **layout.label_tables(),
        predict_test=split_path("test"),
        model=lambda wildcards: model_inputs(wildcards.strong, wildcards),
    output:
        **layout.training_outputs(layout.student_dir(), "test"),
    params:
        **training_params("strong"),
        intervention=lambda wildcards: CELLS[wildcards.intervention].record(),
    threads: model_threads("strong")
    resources:
        **model_resources("strong"),
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/train_student/{task}/seed{seed}/{weak}/{strong}/{intervention}.log",
    benchmark:
        "benchmarks/jobs/train_student/{task}/seed{seed}/{weak}/{strong}/{intervention}.tsv"
    script:
        "../scripts/train_student.py"


# A student that a strong-to-strong successor learns from also relabels strong_train and val.
use rule train_student as train_relabelling_student with:
    wildcard_constraints:
        intervention=_alternatives(RELABELLING_INTERVENTIONS),
    input:
        unpack(conflict_inputs),
        **layout.label_tables(),
        **{f"predict_{s}": split_path(s) for s in ("test", *LABELLED)},
        model=lambda wildcards: model_inputs(wildcards.strong, wildcards),
    output:
        **layout.training_outputs(layout.student_dir(), "test", *LABELLED),


rule train_finetune_probe:
    """Saliency: the student finetuned on weak labels, then a linear probe on its own pooled features (fit on
    strong_train's weak labels or ground truth) predicts test."""
    wildcard_constraints:
        intervention=_alternatives(FINETUNE_PROBE_INTERVENTIONS),
    input:
        unpack(conflict_inputs),
        **layout.label_tables(),
        **{f"split_{s}": split_path(s) for s in STRONG_SPLITS},
        **weak_label_inputs(),
        model=lambda wildcards: model_inputs(wildcards.strong, wildcards),
    output:
        **layout.training_outputs(layout.student_dir(), "test"),
    params:
        **training_params("strong"),
        intervention=lambda wildcards: CELLS[wildcards.intervention].record(),
    threads: model_threads("strong")
    resources:
        **model_resources("strong"),
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/train_finetune_probe/{task}/seed{seed}/{weak}/{strong}/{intervention}.log",
    benchmark:
        "benchmarks/jobs/train_finetune_probe/{task}/seed{seed}/{weak}/{strong}/{intervention}.tsv"
    script:
        "../scripts/train_finetune_probe.py"
