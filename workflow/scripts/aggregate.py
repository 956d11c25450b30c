from w2s.execution.rules import start_rule

start_rule(snakemake.log[0])

from w2s.stages.training import aggregate_stage  # noqa: E402

aggregate_stage(snakemake.params.cells, dict(snakemake.output.items()), snakemake.params.metric)
