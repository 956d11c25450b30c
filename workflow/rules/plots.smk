rule plots:
    """The big results plot, drawn from the summary and aggregate tables alone."""
    input:
        summary=layout.summary_path(),
        intervals=layout.aggregate_path(),
    output:
        png=report(
            layout.plot_path("w2s_results", "png"),
            caption="../report/w2s_results.rst",
            category="Results",
        ),
        pdf=layout.plot_path("w2s_results", "pdf"),
    params:
        metric=config["headline_metric"],
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/plots.log",
    script:
        "../scripts/plot_results.py"


rule size_plot:
    """Accuracy against strong-model size, when the sweep has several strong models."""
    input:
        summary=layout.summary_path(),
        intervals=layout.aggregate_path(),
    output:
        png=report(
            layout.plot_path("w2s_size", "png"),
            caption="../report/w2s_size.rst",
            category="Results",
        ),
        pdf=layout.plot_path("w2s_size", "pdf"),
    params:
        metric=config["headline_metric"],
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/size_plot.log",
    script:
        "../scripts/plot_size.py"


rule imitation_plot:
    """Imitation, accuracy by (weak, ceiling) right/wrong region and deception, drawn from the summary and
    aggregate tables alone."""
    input:
        summary=layout.summary_path(),
        intervals=layout.aggregate_path(),
    output:
        png=report(
            layout.plot_path("w2s_imitation", "png"),
            caption="../report/w2s_imitation.rst",
            category="Results",
        ),
        pdf=layout.plot_path("w2s_imitation", "pdf"),
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/imitation_plot.log",
    script:
        "../scripts/plot_imitation.py"
