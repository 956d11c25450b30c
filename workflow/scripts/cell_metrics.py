from w2s.execution.rules import start_rule

start_rule(snakemake)

from w2s.stages.analysis import metrics_stage  # noqa: E402

metrics_stage(
    test=snakemake.input.test,
    weak=snakemake.input.weak,
    ceiling=snakemake.input.ceiling,
    student=snakemake.input.student,
    cell={**dict(snakemake.wildcards.items()), "seed": int(snakemake.wildcards.seed)},
    provenance=snakemake.params.provenance,
    out=snakemake.output[0],
    probe_report=dict(snakemake.input.items()).get("probe_report"),
)
