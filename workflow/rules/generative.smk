# Weights are intermediate: deleted once every job that loads them has finished, unless train.keep_weights.
GENERATIVE_MODEL_DIR = directory(layout.generative_outputs()["model"])


rule generative_finetune:
    """Generative finetuning (Burns et al.): the alias's pretrained model trained with its pretraining
    objective (next token for a decoder, masked tokens for an encoder) on the texts of one seed's weak_train
    and strong_train, no label of any kind. Every job of the alias for this task and seed loads the result."""
    wildcard_constraints:
        model=_alternatives(GENERATIVE_MODELS),
    input:
        **split_paths(layout.GENERATIVE_SPLITS),
        base=lambda wildcards: base_model_inputs(wildcards.model),
    output:
        model=GENERATIVE_MODEL_DIR if config["train"]["keep_weights"] else temp(GENERATIVE_MODEL_DIR),
        info=layout.generative_outputs()["info"],
    params:
        alias=lambda wildcards: wildcards.model,
        model_path=lambda wildcards: base_model_path(wildcards.model),
        entry=lambda wildcards: model_entry(wildcards.model),
    threads: model_threads("model")
    resources:
        # One GPU at most: the language-model finetuning runs in one process.
        **{**model_resources("model"), "gpu": lambda wildcards: min(model_entry(wildcards.model)["gpus"], 1)},
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/generative_finetune/{task}/seed{seed}/{model}.log",
    benchmark:
        "benchmarks/jobs/generative_finetune/{task}/seed{seed}/{model}.tsv"
    script:
        "../scripts/generative_finetune.py"


# The frozen features of a generatively finetuned strong model, for its probe cells: its weights differ by
# seed, so each seed's examples get a file of their own, extracted from that seed's model.
use rule activations as activations_per_seed with:
    wildcard_constraints:
        strong=_alternatives(sorted(set(GENERATIVE_MODELS) & set(SWEEP_MODELS["strong_models"]))),
    input:
        splits=list(split_paths(STRONG_SPLITS).values()),
        model=lambda wildcards: model_inputs(wildcards.strong, wildcards),
    output:
        layout.seed_activations_path(),
    log:
        "logs/activations/{task}/seed{seed}/{strong}.log",
    benchmark:
        "benchmarks/jobs/activations/{task}/seed{seed}/{strong}.tsv"
