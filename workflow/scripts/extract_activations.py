from w2s.execution.rules import pin_torch_threads, start_rule

start_rule(snakemake)

from w2s.execution.gpu_lease import lease_gpus  # noqa: E402
from w2s.stages.training import activations_stage  # noqa: E402

pin_torch_threads(snakemake.threads)
with lease_gpus(snakemake.resources.gpu):
    activations_stage(
        split_paths=list(snakemake.input.splits),
        model_path=snakemake.params.model_path,
        pooling=snakemake.params.pooling,
        max_length=snakemake.params.max_length,
        layers=snakemake.params.layers,
        batch_size=snakemake.params.batch_size,
        out=snakemake.output[0],
    )
