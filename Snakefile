# w2s-workflow: weak-to-strong generalisation experiments as a Snakemake DAG.
# Run:  snakemake --cores all                 (embedded offline default, CPU)
#       snakemake --cores all --resources gpu=4 --configfile config/burns-gpt2.yaml
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/weak.smk"
include: "workflow/rules/probes.smk"
include: "workflow/rules/labels.smk"
include: "workflow/rules/strong.smk"
include: "workflow/rules/metrics.smk"
include: "workflow/rules/plots.smk"


rule all:
    default_target: True
    input:
        layout.summary_path(),
        layout.aggregate_path(),
        [layout.plot_path("w2s_results", ext) for ext in ("png", "pdf")],
        # Accuracy against strong-model size only means something with strong models of several sizes.
        [layout.plot_path("w2s_size", ext) for ext in ("png", "pdf")] if SIZE_PLOT else [],
