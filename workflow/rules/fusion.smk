from dataclasses import asdict

# Weights are intermediate: deleted once every fusion job that reads them has finished, unless train.keep_weights.
FUSION_EXPERT_DIR = directory(layout.fusion_expert_outputs()["model"])


rule train_fusion_expert:
    """The expert S_ft of dynamic logit fusion: the weak decoder finetuned as a language model on weak_train
    ground truth to say each example's label word after the zero-shot template. One per task, weak model, seed
    and (template, label words); it checks first that the strong models it is fused with share the weak model's
    tokenizer."""
    wildcard_constraints:
        expert=_alternatives(sorted({key for experts in FUSION_EXPERTS.values() for key in experts})),
    input:
        weak_train=split_path("weak_train"),
        model=lambda wildcards: model_inputs(wildcards.weak, wildcards),
        strong_tokenizers=lambda wildcards: [p for s in fusion_strong_models(wildcards) for p in base_model_inputs(s)],
    output:
        model=FUSION_EXPERT_DIR if config["train"]["keep_weights"] else temp(FUSION_EXPERT_DIR),
        info=layout.fusion_expert_outputs()["info"],
    params:
        **training_params("weak"),
        prompt=lambda wildcards: asdict(FUSION_EXPERTS[wildcards.task][wildcards.expert]),
        strong_models=lambda wildcards: {s: base_model_path(s) for s in fusion_strong_models(wildcards)},
    priority: SUPERVISOR_PRIORITY
    threads: model_threads("weak")
    resources:
        # One GPU at most: the language-model finetuning runs in one process.
        **{**model_resources("weak"), "gpu": lambda wildcards: min(model_entry(wildcards.weak)["gpus"], 1)},
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/train_fusion_expert/{task}/seed{seed}/{weak}/{expert}.log",
    benchmark:
        "benchmarks/jobs/train_fusion_expert/{task}/seed{seed}/{weak}/{expert}.tsv"
    script:
        "../scripts/train_fusion_expert.py"


rule fusion_student:
    """Dynamic logit fusion in place of a student: every test example scored by the label words' probabilities
    under softmax(z_L + alpha (z_Sft - z_S)), L the strong model, S the weak model and S_ft its expert, with
    alpha fixed or chosen per example (KL(fused || L) = KL(S_ft || S)). Nothing is trained here."""
    wildcard_constraints:
        intervention=_alternatives(FUSION_INTERVENTIONS),
    input:
        test=split_path("test"),
        expert=lambda wildcards: fusion_expert(wildcards)["model"],
        expert_info=lambda wildcards: fusion_expert(wildcards)["info"],
        strong_model=lambda wildcards: model_inputs(wildcards.strong, wildcards),
        weak_model=lambda wildcards: model_inputs(wildcards.weak, wildcards),
    output:
        **layout.training_outputs(layout.student_dir(), "test"),
    params:
        strong_path=lambda wildcards: model_path(wildcards.strong, wildcards),
        strong_entry=lambda wildcards: model_entry(wildcards.strong),
        weak_path=lambda wildcards: model_path(wildcards.weak, wildcards),
        weak_entry=lambda wildcards: model_entry(wildcards.weak),
        intervention=lambda wildcards: CELLS[wildcards.intervention].record(),
    threads: model_threads("strong")
    resources:
        # One GPU at most, for all three models: inference needs no data-parallel processes.
        **{**model_resources("strong"), "gpu": lambda wildcards: min(model_entry(wildcards.strong)["gpus"], 1)},
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/fusion_student/{task}/seed{seed}/{weak}/{strong}/{intervention}.log",
    benchmark:
        "benchmarks/jobs/fusion_student/{task}/seed{seed}/{weak}/{strong}/{intervention}.tsv"
    script:
        "../scripts/fusion_student.py"
