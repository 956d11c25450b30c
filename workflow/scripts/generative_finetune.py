from w2s.execution.rules import pin_torch_threads, start_rule

start_rule(snakemake)

from w2s.engine.modeling import ModelSpec  # noqa: E402
from w2s.execution.gpu_lease import lease_gpus  # noqa: E402
from w2s.layout import GENERATIVE_SPLITS  # noqa: E402
from w2s.stages.generative import generative_stage  # noqa: E402

params = snakemake.params
pin_torch_threads(snakemake.threads)
with lease_gpus(snakemake.resources.gpu):
    generative_stage(
        ModelSpec.from_config(params.alias, params.entry, params.model_path),
        generative=params.entry["generative"],
        split_paths={name: snakemake.input[name] for name in GENERATIVE_SPLITS},
        seed=int(snakemake.wildcards.seed),
        outputs=dict(snakemake.output.items()),
        attempt=snakemake.resources.attempt,
    )
