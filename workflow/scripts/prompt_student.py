from w2s.execution.rules import pin_torch_threads, start_rule

start_rule(snakemake)

from w2s.engine.modeling import ModelSpec  # noqa: E402
from w2s.execution.gpu_lease import lease_gpus  # noqa: E402
from w2s.stages.prompting import prompt_stage  # noqa: E402

params = snakemake.params
pin_torch_threads(snakemake.threads)
with lease_gpus(snakemake.resources.gpu):
    prompt_stage(
        ModelSpec.from_config(params.alias, params.entry, params.model_path),
        split_paths={"strong_train": snakemake.input.strong_train, "test": snakemake.input.test},
        weak_strong_train=snakemake.input.get("weak_strong_train") or None,
        intervention=params.intervention,
        task=snakemake.wildcards.task,
        seed=int(snakemake.wildcards.seed),
        outputs=dict(snakemake.output.items()),
    )
