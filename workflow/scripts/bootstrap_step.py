from w2s.execution.rules import lease_and_launch, start_rule

start_rule(snakemake)

from w2s.layout import LABELLED_SPLITS, STRONG_SPLITS  # noqa: E402
from w2s.stages.training import bootstrap_step_stage  # noqa: E402

lease_and_launch(
    snakemake,
    bootstrap_step_stage,
    split_paths={name: snakemake.input[name] for name in STRONG_SPLITS},
    label_preds={name: snakemake.input[f"preds_{name}"] for name in LABELLED_SPLITS},
    intervention=snakemake.params.intervention,
    step=int(snakemake.wildcards.step),
)
