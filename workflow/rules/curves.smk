rule curves:
    """Training loss and validation accuracy against the optimizer step of the weak model, the ceiling and
    every trained student of one task, model pair and seed, from their info.json files."""
    input:
        weak=layout.training_outputs(layout.weak_dir())["info"],
        ceiling=layout.training_outputs(layout.ceiling_dir())["info"],
        students=lambda wildcards: [
            layout.training_outputs(layout.student_dir(name))["info"].format(**wildcards)
            for name in curve_students(wildcards)
        ],
    output:
        report(
            layout.curves_plot_path(),
            caption="../report/curves.rst",
            category="Training curves",
            subcategory="{task}",
            labels={"run": "{weak} → {strong}, seed {seed}"},
        ),
    params:
        interventions=curve_students,
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/curves/{task}/seed{seed}/{weak}/{strong}.log",
    script:
        "../scripts/plot_curves.py"
