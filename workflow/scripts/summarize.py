from w2s.execution.rules import start_rule

start_rule(snakemake)

from w2s.analysis.summary import summarise  # noqa: E402
from w2s.atomic import write_text  # noqa: E402

write_text(summarise(snakemake.input, snakemake.params.pgr_min_gap).to_csv(index=False), snakemake.output[0])
