from w2s.execution.rules import pin_torch_threads, start_rule

start_rule(snakemake)

from w2s.engine.modeling import ModelSpec  # noqa: E402
from w2s.execution.gpu_lease import lease_gpus  # noqa: E402
from w2s.stages.fusion import fusion_stage  # noqa: E402

params = snakemake.params
wildcards = snakemake.wildcards
pin_torch_threads(snakemake.threads)
with lease_gpus(snakemake.resources.gpu):
    fusion_stage(
        strong=ModelSpec.from_config(wildcards.strong, params.strong_entry, params.strong_path),
        weak=ModelSpec.from_config(wildcards.weak, params.weak_entry, params.weak_path),
        expert_dir=snakemake.input.expert,
        test_path=snakemake.input.test,
        intervention=params.intervention,
        task=wildcards.task,
        seed=int(wildcards.seed),
        outputs=dict(snakemake.output.items()),
    )
