from w2s.execution.rules import start_rule

start_rule(snakemake)

from w2s.data.materialize import materialize_dataset  # noqa: E402

materialize_dataset(snakemake.wildcards.task, snakemake.output[0], snakemake.params.cache)
