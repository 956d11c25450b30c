from w2s.execution.rules import start_rule

start_rule(snakemake)

from w2s.analysis.curves import plot_curves  # noqa: E402

run = snakemake.wildcards
jobs = {
    f"weak ({run.weak})": ("weak", snakemake.input.weak),
    f"ceiling ({run.strong})": ("ceiling", snakemake.input.ceiling),
    **{name: ("student", path) for name, path in zip(snakemake.params.interventions, snakemake.input.students)},
}
plot_curves(jobs, f"{run.task}: {run.weak} → {run.strong}, seed {run.seed}", snakemake.output[0])
