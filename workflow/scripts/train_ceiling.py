from w2s.execution.rules import start_rule

start_rule(snakemake.log[0], snakemake.threads, snakemake.config["hub_offline"])

from w2s.execution.launch import run_distributed  # noqa: E402
from w2s.execution.gpu_lease import lease_gpus  # noqa: E402

with lease_gpus(snakemake.resources.gpu):
    run_distributed("ceiling_stage", dict(
        split_paths={name: snakemake.input[name] for name in ("strong_train", "val", "test")},
        alias=snakemake.params.alias,
        entry=snakemake.params.entry,
        model_path=snakemake.params.model_path,
        train_section=snakemake.params.train,
        seed=int(snakemake.wildcards.seed),
        outputs=dict(snakemake.output.items()),
        attempt=snakemake.resources.attempt,
    ), max(1, snakemake.resources.gpu))
