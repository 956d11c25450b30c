from w2s.execution.rules import start_rule

start_rule(snakemake)

from w2s.stages.debate_labels import debate_labels_stage  # noqa: E402

debate_labels_stage(
    strong_train=snakemake.input.strong_train,
    val=snakemake.input.val,
    test=snakemake.input.test,
    members=snakemake.params.members,
    debater=snakemake.params.debater,
    outputs=dict(snakemake.output.items()),
)
