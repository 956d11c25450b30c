# w2s-workflow: weak-to-strong generalisation experiments as a Snakemake DAG.
# Run:  snakemake --cores all                 (embedded offline default, CPU)
#       snakemake --cores all --resources gpu=4 --configfile config/burns-gpt2.yaml
from snakemake.utils import min_version

min_version("9.0")


# A config file given on the command line replaces the default instead of being merged into it. Snakemake
# hands every job it submits (SLURM or any other executor) the same --configfiles but not
# --replace-workflow-config, so a job would otherwise merge the default into the user's config and run
# cells the user never configured: deciding here, from the config files alone, gives the main process
# and every job the same config.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/weak.smk"
include: "workflow/rules/probes.smk"
include: "workflow/rules/lower_states.smk"
include: "workflow/rules/generative.smk"
include: "workflow/rules/labels.smk"
include: "workflow/rules/strong.smk"
include: "workflow/rules/prompting.smk"
include: "workflow/rules/debate.smk"
include: "workflow/rules/fusion.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/plots.smk"
include: "workflow/rules/curves.smk"


rule all:
    default_target: True
    input:
        layout.summary_path(),
        layout.aggregate_path(),
        [layout.plot_path("w2s_results", ext) for ext in ("png", "pdf")],
        [layout.plot_path("w2s_imitation", ext) for ext in ("png", "pdf")],
        # Accuracy against strong-model size only means something with strong models of several sizes.
        [layout.plot_path("w2s_size", ext) for ext in ("png", "pdf")] if SIZE_PLOT else [],
        CURVE_PLOTS,


onstart:
    # SLURM leaves a job that no node can run pending for ever, and Snakemake waits for it in silence.
    if workflow.executor_plugin.name == "slurm":
        from w2s.execution.slurm_requests import check_slurm_jobs

        check_slurm_jobs(workflow.dag.needrun_jobs())
