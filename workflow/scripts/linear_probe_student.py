from w2s.execution.rules import start_rule

start_rule(snakemake)

from w2s.layout import STRONG_SPLITS  # noqa: E402
from w2s.stages.labels import linear_probe_stage  # noqa: E402

linear_probe_stage(
    split_paths={name: snakemake.input[name] for name in STRONG_SPLITS},
    activations=snakemake.input.activations,
    weak_preds={"strong_train": snakemake.input.weak_strong_train, "val": snakemake.input.weak_val},
    intervention=snakemake.params.intervention,
    outputs=dict(snakemake.output.items()),
)
