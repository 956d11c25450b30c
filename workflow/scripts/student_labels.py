from w2s.execution.rules import start_rule

start_rule(snakemake)

from w2s.stages.labels import student_labels_stage  # noqa: E402

student_labels_stage(
    strong_train=snakemake.input.strong_train,
    val=snakemake.input.val,
    weak_strong_train=snakemake.input.preds_strong_train,
    weak_val=snakemake.input.preds_val,
    outputs=dict(snakemake.output.items()),
)
