from w2s.execution.rules import start_rule

start_rule(snakemake)

from w2s.stages.labels import confident_labels_stage  # noqa: E402

confident_labels_stage(
    strong_train=snakemake.input.strong_train,
    val=snakemake.input.val,
    weak_strong_train=snakemake.input.weak_strong_train,
    weak_val=snakemake.input.weak_val,
    keep=snakemake.params.keep,
    outputs=dict(snakemake.output.items()),
)
