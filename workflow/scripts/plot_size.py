from w2s.execution.rules import start_rule

start_rule(snakemake)

import pandas as pd  # noqa: E402

from w2s.analysis.plots import load_summary, save_figure  # noqa: E402
from w2s.analysis.size_plot import build_size_figure  # noqa: E402

summary = load_summary(snakemake.input.summary)
figure = build_size_figure(summary, snakemake.params.metric, pd.read_csv(snakemake.input.intervals))
save_figure(figure, snakemake.output.png, snakemake.output.pdf)
