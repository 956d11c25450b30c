from w2s.execution.rules import start_rule

start_rule(snakemake)

from w2s.stages.analysis import aggregate_stage  # noqa: E402

aggregate_stage(
    snakemake.params.cells, dict(snakemake.output.items()), snakemake.params.metric, snakemake.params.pgr_min_gap
)
