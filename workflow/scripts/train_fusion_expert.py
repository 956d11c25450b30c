from w2s.execution.rules import lease_and_launch, start_rule

start_rule(snakemake)

from w2s.stages.fusion import expert_stage  # noqa: E402

# The rule asks for one GPU at most, so the stage runs in this process.
lease_and_launch(
    snakemake,
    expert_stage,
    weak_train=snakemake.input.weak_train,
    prompt=snakemake.params.prompt,
    strong_models=snakemake.params.strong_models,
)
