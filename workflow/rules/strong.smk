rule train_ceiling:
    """Strong ceiling: the strong model trained on strong_train ground truth. Shared by every weak model
    and intervention."""
    input:
        strong_train=split_path("strong_train"),
        val=split_path("val"),
        test=split_path("test"),
        model=lambda wildcards: model_inputs(wildcards.strong),
    output:
        test="results/{task}/seed{seed}/ceiling/{strong}/test.parquet",
        info="results/{task}/seed{seed}/ceiling/{strong}/info.json",
    params:
        alias=lambda wildcards: wildcards.strong,
        model_path=lambda wildcards: model_path(wildcards.strong),
        # The config entries are params so that editing them reruns exactly the jobs they affect.
        entry=lambda wildcards: model_entry(wildcards.strong),
        train=config["train"],
    threads: lambda wildcards: job_threads(wildcards.strong)
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


rule student_labels:
    """The labels the student trains and selects on: the weak model's soft labels on strong_train and val.
    No ground-truth column is written, so none can reach the student."""
    wildcard_constraints:
        intervention=_alternatives(WEAK_LABEL_INTERVENTIONS),
    input:
        strong_train=split_path("strong_train"),
        val=split_path("val"),
        weak_strong_train="results/{task}/seed{seed}/weak/{weak}/strong_train.parquet",
        weak_val="results/{task}/seed{seed}/weak/{weak}/val.parquet",
    output:
        train="results/{task}/seed{seed}/labels/{weak}/{strong}/{intervention}/train.parquet",
        val="results/{task}/seed{seed}/labels/{weak}/{strong}/{intervention}/val.parquet",
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/student_labels/{task}/seed{seed}/{weak}/{strong}/{intervention}.log",
    script:
        "../scripts/student_labels.py"


rule train_student:
    """Strong student: trained on the labels above under the intervention's loss; predictions on test."""
    input:
        train="results/{task}/seed{seed}/labels/{weak}/{strong}/{intervention}/train.parquet",
        val="results/{task}/seed{seed}/labels/{weak}/{strong}/{intervention}/val.parquet",
        test=split_path("test"),
        model=lambda wildcards: model_inputs(wildcards.strong),
    output:
        test="results/{task}/seed{seed}/student/{weak}/{strong}/{intervention}/test.parquet",
        info="results/{task}/seed{seed}/student/{weak}/{strong}/{intervention}/info.json",
    params:
        alias=lambda wildcards: wildcards.strong,
        model_path=lambda wildcards: model_path(wildcards.strong),
        # The config entries are params so that editing them reruns exactly the jobs they affect.
        entry=lambda wildcards: model_entry(wildcards.strong),
        train=config["train"],
        intervention=lambda wildcards: config["interventions"][wildcards.intervention],
    threads: lambda wildcards: job_threads(wildcards.strong)
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
