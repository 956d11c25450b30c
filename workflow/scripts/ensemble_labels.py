from w2s.execution.rules import start_rule

start_rule(snakemake)

from w2s.stages.labels import ensemble_labels_stage  # noqa: E402

ensemble_labels_stage(
    strong_train=snakemake.input.strong_train,
    val=snakemake.input.val,
    members=snakemake.params.members,
    outputs=dict(snakemake.output.items()),
)
