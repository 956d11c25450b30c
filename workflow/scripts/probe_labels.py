from w2s.execution.rules import start_rule

start_rule(snakemake)

from w2s.stages.labels import probe_labels_stage  # noqa: E402

probe_labels_stage(
    strong_train=snakemake.input.strong_train,
    val=snakemake.input.val,
    weak_strong_train=snakemake.input.weak_strong_train,
    weak_val=snakemake.input.weak_val,
    activations=snakemake.input.activations,
    probe=snakemake.params.probe,
    outputs=dict(snakemake.output.items()),
)
