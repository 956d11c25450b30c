from w2s.execution.rules import pin_torch_threads, start_rule

start_rule(snakemake)

from w2s.execution.gpu_lease import lease_gpus  # noqa: E402
from w2s.stages.training import lower_states_stage  # noqa: E402

pin_torch_threads(snakemake.threads)
with lease_gpus(snakemake.resources.gpu):
    lower_states_stage(
        split_paths=list(snakemake.input.splits),
        alias=snakemake.wildcards.model,
        entry=snakemake.params.entry,
        model_path=snakemake.params.model_path,
        out=snakemake.output[0],
    )
