# Students that are trained models: a linear probe on frozen features and a prompted model have no curve.
TRAINED_STUDENT_INTERVENTIONS = [name for name, cell in CELLS.items() if cell.trains_student]
# The training-curve figure of every task, model pair and seed.
CURVE_PLOTS = [
    layout.curves_plot_path().format(task=t, weak=w, strong=s, seed=seed)
    for t in config["tasks"]
    for w in config["weak_models"]
    for s in config["strong_models"]
    for seed in config["seeds"]
]


rule curves:
    """Training loss and validation accuracy against the optimizer step of the weak model, the ceiling and
    every trained student of one task, model pair and seed, from their info.json files."""
    input:
        weak=layout.training_outputs(layout.weak_dir())["info"],
        ceiling=layout.training_outputs(layout.ceiling_dir())["info"],
        students=[layout.training_outputs(layout.student_dir(name))["info"] for name in TRAINED_STUDENT_INTERVENTIONS],
    output:
        report(
            layout.curves_plot_path(),
            caption="../report/curves.rst",
            category="Training curves",
            subcategory="{task}",
            labels={"run": "{weak} → {strong}, seed {seed}"},
        ),
    params:
        interventions=TRAINED_STUDENT_INTERVENTIONS,
    conda:
        "../../envs/w2s.yaml"
    log:
        "logs/curves/{task}/seed{seed}/{weak}/{strong}.log",
    script:
        "../scripts/plot_curves.py"
