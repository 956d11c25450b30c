from w2s.execution.rules import lease_and_launch, start_rule

start_rule(snakemake)

from w2s.layout import SPLITS  # noqa: E402
from w2s.stages.debate import debate_weak_stage  # noqa: E402

lease_and_launch(
    snakemake,
    debate_weak_stage,
    split_paths={name: snakemake.input[name] for name in SPLITS},
    transcripts={name: snakemake.input[f"transcripts_{name}"] for name in SPLITS},
)
