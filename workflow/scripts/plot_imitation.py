from w2s.execution.rules import start_rule

start_rule(snakemake)

import pandas as pd  # noqa: E402

from w2s.analysis.imitation_plot import build_imitation_figure  # noqa: E402
from w2s.analysis.plots import load_summary, save_figure  # noqa: E402

figure = build_imitation_figure(load_summary(snakemake.input.summary), pd.read_csv(snakemake.input.intervals))
save_figure(figure, snakemake.output.png, snakemake.output.pdf)
