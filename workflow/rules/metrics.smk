rule cell_metrics:
    """Test accuracy and AUROC of weak, ceiling and student, and PGR on both, for one cell and seed."""
    input:
        unpack(probe_report_input),
        test=split_path("test"),
        weak="results/{task}/seed{seed}/weak/{weak}/test.parquet",
        ceiling="results/{task}/seed{seed}/ceiling/{strong}/test.parquet",
        student="results/{task}/seed{seed}/student/{weak}/{strong}/{intervention}/test.parquet",
    output:
        "results/{task}/seed{seed}/metrics/{weak}/{strong}/{intervention}.json",
    params:
        provenance=lambda wildcards: provenance(wildcards),
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/cell_metrics/{task}/seed{seed}/{weak}/{strong}/{intervention}.log",
    script:
        "../scripts/cell_metrics.py"


rule summary:
    """One tidy row per cell and seed."""
    input:
        metric_files(),
    output:
        report(
            "results/summary.csv",
            caption="../report/summary.rst",
            category="Results",
        ),
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/summary.log",
    script:
        "../scripts/summarize.py"


rule aggregate:
    """Means over seeds with bootstrap intervals (over seeds and test examples) per cell, and the median
    PGR of each intervention across tasks."""
    input:
        [c[f"{who}_path"] for c in cell_prediction_files() for who in ("test", "weak", "ceiling", "student")],
    output:
        cells=report("results/aggregate.csv", caption="../report/aggregate.rst", category="Results"),
        median="results/median_pgr.csv",
    params:
        cells=cell_prediction_files(),
        metric=config["headline_metric"],
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/aggregate.log",
    script:
        "../scripts/aggregate.py"
