from w2s.execution.rules import lease_and_launch, start_rule

start_rule(snakemake)

from w2s.stages.training import student_stage  # noqa: E402

lease_and_launch(
    snakemake,
    student_stage,
    label_paths={"train": snakemake.input.train, "val": snakemake.input.val},
    predict_paths={k.removeprefix("predict_"): v for k, v in snakemake.input.items() if k.startswith("predict_")},
    intervention=snakemake.params.intervention,
    conflict_split=dict(snakemake.input.items()).get("conflict_strong_train"),
)
