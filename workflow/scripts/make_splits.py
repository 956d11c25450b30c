from w2s.execution.rules import start_rule

start_rule(snakemake)

from w2s.layout import SPLITS  # noqa: E402
from w2s.stages.data import splits_stage  # noqa: E402

splits_stage(
    task=snakemake.wildcards.task,
    raw_path=snakemake.params.raw_path,
    sizes=snakemake.params.sizes,
    seed=int(snakemake.wildcards.seed),
    balance=snakemake.params.balance,
    outputs={name: snakemake.output[name] for name in SPLITS},
    rating_range=snakemake.params.rating_range,
)
