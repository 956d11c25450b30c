from w2s.execution.rules import lease_and_launch, start_rule

start_rule(snakemake)

from w2s.layout import STRONG_SPLITS  # noqa: E402
from w2s.stages.training import ceiling_stage  # noqa: E402

lease_and_launch(snakemake, ceiling_stage, split_paths={name: snakemake.input[name] for name in STRONG_SPLITS})
