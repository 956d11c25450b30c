rule train_weak:
    """Weak supervisor: trained on weak_train ground truth (selected on val ground truth), then its soft
    labels for strong_train, val and test. Shared by every strong model and intervention."""
    input:
        unpack(lambda wildcards: {s: split_path(s).format(**wildcards) for s in SPLITS}),
        model=lambda wildcards: model_inputs(wildcards.weak),
    output:
        strong_train="results/{task}/seed{seed}/weak/{weak}/strong_train.parquet",
        val="results/{task}/seed{seed}/weak/{weak}/val.parquet",
        test="results/{task}/seed{seed}/weak/{weak}/test.parquet",
        info="results/{task}/seed{seed}/weak/{weak}/info.json",
    params:
        alias=lambda wildcards: wildcards.weak,
        model_path=lambda wildcards: model_path(wildcards.weak),
        # The config entries are params so that editing them reruns exactly the jobs they affect.
        entry=lambda wildcards: model_entry(wildcards.weak),
        train=config["train"],
    threads: lambda wildcards: job_threads(wildcards.weak)
    resources:
        **model_resources("weak"),
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/train_weak/{task}/seed{seed}/{weak}.log",
    benchmark:
        "benchmarks/jobs/train_weak/{task}/seed{seed}/{weak}.tsv"
    script:
        "../scripts/train_weak.py"
