from w2s.execution.rules import start_rule

start_rule(snakemake)

import pandas as pd  # noqa: E402

from w2s.analysis.plots import load_summary, plot_results  # noqa: E402

plot_results(
    load_summary(snakemake.input.summary),
    snakemake.output.png,
    snakemake.output.pdf,
    snakemake.params.metric,
    pd.read_csv(snakemake.input.intervals),
)
