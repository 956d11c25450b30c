rule prompt_student:
    """Zero- or few-shot prompting of the strong decoder in place of a student: p(class 1) of every test example
    from the log-probabilities of the two label words after its prompt; demonstrations from strong_train carry
    the weak model's labels or ground truth. Nothing is trained."""
    wildcard_constraints:
        intervention=_alternatives(PROMPT_INTERVENTIONS),
    input:
        **split_paths(("strong_train", "test")),
        weak_strong_train=weak_demo_labels,
        model=lambda wildcards: model_inputs(wildcards.strong, wildcards),
    output:
        **layout.training_outputs(layout.student_dir(), "test"),
    params:
        alias=lambda wildcards: wildcards.strong,
        model_path=lambda wildcards: model_path(wildcards.strong, wildcards),
        entry=lambda wildcards: model_entry(wildcards.strong),
        intervention=lambda wildcards: CELLS[wildcards.intervention].record(),
    threads: model_threads("strong")
    resources:
        # One GPU at most: inference needs no data-parallel processes.
        **{**model_resources("strong"), "gpu": lambda wildcards: min(model_entry(wildcards.strong)["gpus"], 1)},
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/prompt_student/{task}/seed{seed}/{weak}/{strong}/{intervention}.log",
    benchmark:
        "benchmarks/jobs/prompt_student/{task}/seed{seed}/{weak}/{strong}/{intervention}.tsv"
    script:
        "../scripts/prompt_student.py"
