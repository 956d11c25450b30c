from w2s.rule_io import start_rule

start_rule(snakemake.log[0])

from w2s.plots import load_summary, plot_results  # noqa: E402

plot_results(load_summary(snakemake.input[0]), snakemake.output.png, snakemake.output.pdf, snakemake.params.metric)
