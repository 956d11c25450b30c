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
        train_seed=lambda wildcards: int(wildcards.seed),
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


# Another weak supervisor for an ensemble: the same model on the same weak_train split, trained from another
# seed. Replica 0 is the shared weak model above.
use rule train_weak as train_weak_replica with:
    output:
        strong_train="results/{task}/seed{seed}/weak/{weak}/replica{replica}/strong_train.parquet",
        val="results/{task}/seed{seed}/weak/{weak}/replica{replica}/val.parquet",
        test="results/{task}/seed{seed}/weak/{weak}/replica{replica}/test.parquet",
        info="results/{task}/seed{seed}/weak/{weak}/replica{replica}/info.json",
    params:
        alias=lambda wildcards: wildcards.weak,
        model_path=lambda wildcards: model_path(wildcards.weak),
        entry=lambda wildcards: model_entry(wildcards.weak),
        train=config["train"],
        train_seed=lambda wildcards: replica_seed(int(wildcards.seed), int(wildcards.replica)),
    log:
        "logs/train_weak/{task}/seed{seed}/{weak}/replica{replica}.log",
    benchmark:
        "benchmarks/jobs/train_weak/{task}/seed{seed}/{weak}/replica{replica}.tsv"
