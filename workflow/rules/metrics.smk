rule cell_metrics:
    """Test accuracy and AUROC of weak, ceiling and student, PGR on both, and the student's imitation and
    deception rates, for one cell and seed."""
    input:
        unpack(probe_report_input),
        test=split_path("test"),
        weak=layout.predictions(layout.weak_dir(), "test")["test"],
        ceiling=layout.predictions(layout.ceiling_dir(), "test")["test"],
        student=layout.predictions(layout.student_dir(), "test")["test"],
    output:
        layout.metrics_path(),
    params:
        provenance=lambda wildcards: provenance(wildcards),
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/cell_metrics/{task}/seed{seed}/{weak}/{strong}/{intervention}.log",
    script:
        "../scripts/cell_metrics.py"


rule summary:
    """One tidy row per cell and seed: scores, PGR (undefined, with the reason, where the gap to recover is not
    above analysis.pgr_min_gap), imitation and deception rates."""
    input:
        metric_files(),
    output:
        report(
            layout.summary_path(),
            caption="../report/summary.rst",
            category="Results",
        ),
    params:
        pgr_min_gap=config["analysis"]["pgr_min_gap"],
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
        cells=report(layout.aggregate_path(), caption="../report/aggregate.rst", category="Results"),
        median=layout.median_pgr_path(),
    params:
        cells=cell_prediction_files(),
        metric=config["headline_metric"],
        pgr_min_gap=config["analysis"]["pgr_min_gap"],
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/aggregate.log",
    script:
        "../scripts/aggregate.py"
