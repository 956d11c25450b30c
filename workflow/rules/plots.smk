rule plots:
    """The big results plot, drawn from the summary table alone."""
    input:
        "results/summary.csv",
    output:
        png=report(
            "results/plots/w2s_results.png",
            caption="../report/w2s_results.rst",
            category="Results",
        ),
        pdf="results/plots/w2s_results.pdf",
    params:
        metric=config["headline_metric"],
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/plots.log",
    script:
        "../scripts/plot_results.py"
