rule train_weak:
    """Weak supervisor: trained on weak_train ground truth (selected on val ground truth), then its soft
    labels for strong_train, val and test. Shared by every strong model and intervention."""
    input:
        **split_paths(),
        model=lambda wildcards: model_inputs(wildcards.weak, wildcards),
    output:
        **layout.training_outputs(layout.weak_dir(), "strong_train", "val", "test"),
    params:
        **training_params("weak"),
    priority: SUPERVISOR_PRIORITY
    threads: model_threads("weak")
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
        **layout.training_outputs(layout.weak_dir(replica="{replica}"), "strong_train", "val", "test"),
    params:
        **training_params("weak", seed=lambda wildcards: replica_seed(int(wildcards.seed), int(wildcards.replica))),
    log:
        "logs/train_weak/{task}/seed{seed}/{weak}/replica{replica}.log",
    benchmark:
        "benchmarks/jobs/train_weak/{task}/seed{seed}/{weak}/replica{replica}.tsv"
