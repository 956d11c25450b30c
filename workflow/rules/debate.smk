rule debate_transcripts:
    """The debater decoder argues for each answer of every example of every split, `turns` rounds; one
    transcript table per split, keyed by example id. Shared by every cell and weak model of this debater."""
    wildcard_constraints:
        debater=_alternatives(sorted(DEBATES)),
    input:
        **split_paths(),
        model=lambda wildcards: model_inputs(wildcards.debater, wildcards),
    output:
        **layout.training_outputs(layout.transcripts_dir(), *SPLITS),
    params:
        alias=lambda wildcards: wildcards.debater,
        model_path=lambda wildcards: model_path(wildcards.debater, wildcards),
        entry=lambda wildcards: model_entry(wildcards.debater),
        debate=lambda wildcards: DEBATES[wildcards.debater],
    priority: SUPERVISOR_PRIORITY
    threads: model_threads("debater")
    resources:
        # One GPU at most: generation needs no data-parallel processes.
        **{
            **model_resources("debater"),
            "gpu": lambda wildcards: min(model_entry(wildcards.debater)["gpus"], 1),
        },
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/debate_transcripts/{task}/seed{seed}/{debater}.log",
    benchmark:
        "benchmarks/jobs/debate_transcripts/{task}/seed{seed}/{debater}.tsv"
    script:
        "../scripts/debate_transcripts.py"


rule train_debate_weak:
    """A debate-informed weak supervisor: the weak model trained on weak_train ground truth with each text
    followed by its debate transcript, predicting strong_train, val and test with theirs. Replica r trains
    from seed + 1000 r; every cell of this weak model and debater shares it."""
    wildcard_constraints:
        debater=_alternatives(sorted(DEBATES)),
        replica=r"\d+",
    input:
        **split_paths(),
        **{f"transcripts_{s}": p for s, p in layout.predictions(layout.transcripts_dir(), *SPLITS).items()},
        model=lambda wildcards: model_inputs(wildcards.weak, wildcards),
    output:
        **layout.training_outputs(layout.debate_weak_dir(), *STRONG_SPLITS),
    params:
        **training_params("weak", seed=lambda wildcards: replica_seed(int(wildcards.seed), int(wildcards.replica))),
    priority: SUPERVISOR_PRIORITY
    threads: model_threads("weak")
    resources:
        **model_resources("weak"),
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/train_debate_weak/{task}/seed{seed}/{weak}/{debater}/replica{replica}.log",
    benchmark:
        "benchmarks/jobs/train_debate_weak/{task}/seed{seed}/{weak}/{debater}/replica{replica}.tsv"
    script:
        "../scripts/train_debate_weak.py"


rule debate_labels:
    """The mean soft label of a cell's debate-informed weak supervisors on strong_train and val, on the plain
    texts (the student never sees a debate); a report of their test accuracy beside it."""
    wildcard_constraints:
        intervention=_alternatives(DEBATE_INTERVENTIONS),
    input:
        **split_paths(STRONG_SPLITS),
        members=lambda wildcards: [path for member in debate_member_files(wildcards) for path in member.values()],
    output:
        **layout.label_tables(),
        report=layout.debate_report_path(),
    params:
        members=debate_member_files,
        debater=cell_debater,
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/debate_labels/{task}/seed{seed}/{weak}/{strong}/{intervention}.log",
    script:
        "../scripts/debate_labels.py"
