from w2s.execution.rules import lease_and_launch, start_rule

start_rule(snakemake)

from w2s.layout import STRONG_SPLITS  # noqa: E402
from w2s.stages.training import finetune_probe_stage  # noqa: E402

lease_and_launch(
    snakemake,
    finetune_probe_stage,
    label_paths={"train": snakemake.input.train, "val": snakemake.input.val},
    split_paths={name: snakemake.input[f"split_{name}"] for name in STRONG_SPLITS},
    weak_preds={"strong_train": snakemake.input.weak_strong_train, "val": snakemake.input.weak_val},
    intervention=snakemake.params.intervention,
    conflict_split=dict(snakemake.input.items()).get("conflict_strong_train"),
)
