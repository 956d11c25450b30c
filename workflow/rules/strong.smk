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


rule train_student:
    """Strong student: trained on its cell's labels under the intervention's loss; predictions on test."""
    wildcard_constraints:
        intervention=_alternatives(PLAIN_STUDENT_INTERVENTIONS),
    input:
        train="results/{task}/seed{seed}/labels/{weak}/{strong}/{intervention}/train.parquet",
        val="results/{task}/seed{seed}/labels/{weak}/{strong}/{intervention}/val.parquet",
        predict_test=split_path("test"),
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
        intervention=lambda wildcards: CELLS[wildcards.intervention].record(),
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


# A student that a strong-to-strong successor learns from also relabels strong_train and val.
use rule train_student as train_relabelling_student with:
    wildcard_constraints:
        intervention=_alternatives(RELABELLING_INTERVENTIONS),
    input:
        train="results/{task}/seed{seed}/labels/{weak}/{strong}/{intervention}/train.parquet",
        val="results/{task}/seed{seed}/labels/{weak}/{strong}/{intervention}/val.parquet",
        predict_test=split_path("test"),
        predict_strong_train=split_path("strong_train"),
        predict_val=split_path("val"),
        model=lambda wildcards: model_inputs(wildcards.strong),
    output:
        test="results/{task}/seed{seed}/student/{weak}/{strong}/{intervention}/test.parquet",
        strong_train="results/{task}/seed{seed}/student/{weak}/{strong}/{intervention}/strong_train.parquet",
        val="results/{task}/seed{seed}/student/{weak}/{strong}/{intervention}/val.parquet",
        info="results/{task}/seed{seed}/student/{weak}/{strong}/{intervention}/info.json",


rule train_finetune_probe:
    """Saliency: the student finetuned on weak labels, then a linear probe on its own pooled features (fit on
    strong_train's weak labels or ground truth) predicts test."""
    wildcard_constraints:
        intervention=_alternatives(FINETUNE_PROBE_INTERVENTIONS),
    input:
        train="results/{task}/seed{seed}/labels/{weak}/{strong}/{intervention}/train.parquet",
        val="results/{task}/seed{seed}/labels/{weak}/{strong}/{intervention}/val.parquet",
        **{f"split_{s}": split_path(s) for s in ("strong_train", "val", "test")},
        weak_strong_train="results/{task}/seed{seed}/weak/{weak}/strong_train.parquet",
        weak_val="results/{task}/seed{seed}/weak/{weak}/val.parquet",
        model=lambda wildcards: model_inputs(wildcards.strong),
    output:
        test="results/{task}/seed{seed}/student/{weak}/{strong}/{intervention}/test.parquet",
        info="results/{task}/seed{seed}/student/{weak}/{strong}/{intervention}/info.json",
    params:
        alias=lambda wildcards: wildcards.strong,
        model_path=lambda wildcards: model_path(wildcards.strong),
        entry=lambda wildcards: model_entry(wildcards.strong),
        train=config["train"],
        intervention=lambda wildcards: CELLS[wildcards.intervention].record(),
    threads: lambda wildcards: job_threads(wildcards.strong)
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
