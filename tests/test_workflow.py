"""The real Snakemake DAG: dry runs of its shape, the linter, and one end-to-end run on a tiny config."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tiny_models import tiny_bert, tiny_decoder
from tiny_workflow import ROOT, SNAKEMAKE, TEST_DIR, TINY_BERT, e2e_config, snakemake
from w2s import layout
from w2s.config import validate_config
from w2s.engine.lower_states import LowerStates
from w2s.labels.interventions import intervention_cells

# The end-to-end run is shared with the other tests that read a finished run (tests/finished_run.py).
pytest_plugins = ["finished_run"]


def job_counts(dry_run_output: str) -> dict[str, int]:
    table = dry_run_output.split("Job stats:")[1]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def hub_config(**overrides) -> dict:
    config = yaml.safe_load((ROOT / "config" / "burns-gpt2.yaml").read_text())
    config.update(overrides)
    return config


def test_weak_and_ceiling_run_once_per_task_model_and_seed(tmp_path):
    config = hub_config(
        tasks=["boolq", "sciq", "cosmos_qa"],
        seeds=[0, 1],
        strong_models=["gpt2-medium"],
        interventions={"xent": {"loss": "xent"}, "xent_again": {"loss": "xent"}},
    )
    counts = job_counts(snakemake(tmp_path, config, "-n", "--quiet", "rules").stdout)
    assert counts["train_weak"] == 6 and counts["train_ceiling"] == 6
    assert counts["train_student"] == 12 and counts["cell_metrics"] == 12
    assert counts["splits"] == 6 and "materialize_dataset" not in counts


def test_two_strong_models_share_the_weak_model(tmp_path):
    counts = job_counts(snakemake(tmp_path, hub_config(tasks=["sciq"], seeds=[0]), "-n", "--quiet", "rules").stdout)
    assert (counts["train_weak"], counts["train_ceiling"], counts["train_student"]) == (1, 2, 2)


PROBE_INTERVENTIONS = {
    "xent": {"loss": "xent"},
    "knn_filter": {"loss": "xent", "probe": {"name": "knn", "use": "filter", "contamination": 0.1, "k": 20}},
    "logreg_relabel": {"loss": "xent", "probe": {"name": "logreg", "use": "relabel"}},
    "topo_filter": {"loss": "xent", "probe": {"name": "topo", "use": "filter", "k": 20}},
}


def test_one_activation_job_per_task_and_strong_model_shared_by_probe_cells(tmp_path):
    config = hub_config(tasks=["sciq", "boolq"], seeds=[0, 1], interventions=PROBE_INTERVENTIONS)
    counts = job_counts(snakemake(tmp_path, config, "-n", "--quiet", "rules").stdout)
    assert counts["activations"] == 2 * 2  # 2 tasks x 2 strong models, whatever the seeds and probes
    assert counts["probe_labels"] == 2 * 2 * 2 * 3 and counts["student_labels"] == 2 * 2 * 2
    assert counts["train_weak"] == 4 and counts["train_ceiling"] == 8 and counts["train_student"] == 32


STUDENT_RULES = ("train_student", "train_relabelling_student", "train_finetune_probe", "linear_probe_student")


def test_default_config_gives_every_intervention_its_own_student_job(tmp_path):
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    counts = job_counts(snakemake(tmp_path, config, "-n", "--quiet", "rules").stdout)
    runs = len(config["tasks"]) * len(config["seeds"])
    cells = intervention_cells(validate_config(config)["interventions"])
    assert {c.kind for c in cells.values()} == {
        "weak",
        "s2s",
        "probe",
        "bootstrap",
        "ensemble",
        "linear_probe",
        "finetune_probe",
    }
    assert sum(counts.get(rule, 0) for rule in STUDENT_RULES) == len(cells) * runs == counts["cell_metrics"]
    # Shared nodes run once per (task, model, seed), however many cells use them.
    assert counts["train_weak"] == runs and counts["train_ceiling"] == runs
    assert counts["activations"] == len(config["tasks"]) and counts["bootstrap_step"] == runs
    # MPNet and the intermediate model train over their lower blocks' states, computed once per task.
    frozen = [alias for alias, entry in config["models"].items() if entry.get("frozen_layers")]
    assert sorted(frozen) == ["mpnet", "mpnet_l4"] and counts["lower_states"] == len(frozen) * len(config["tasks"])
    # Two more weak replicas for the 3-member ensemble; s2s relabels with the xent student and its first
    # iteration's, so exactly those two students also predict strong_train.
    assert counts["train_weak_replica"] == 2 * runs and counts["train_relabelling_student"] == 2 * runs


# Rules whose outputs other trainings wait for; Snakemake starts ready jobs of a higher priority first.
SUPERVISOR_RULES = {"train_weak", "train_weak_replica", "bootstrap_step", "activations", "lower_states"}
# Supervisors too, in cells that the default config has none of.
OTHER_SUPERVISOR_RULES = {"debate_transcripts", "train_debate_weak", "train_fusion_expert"}


def test_supervisors_go_before_the_jobs_that_wait_for_them(tmp_path):
    """So that a sweep releases its students early rather than idling GPUs at its end behind a weak model
    started last (benchmarks/results/gpu_busy_sweep.md)."""
    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    priorities: dict[str, set[int]] = {}
    for job in re.split(r"^rule ", snakemake(tmp_path, config, "-n").stdout, flags=re.MULTILINE)[1:]:
        found = re.search(r"^\s+priority: (\d+)$", job, re.MULTILINE)
        priorities.setdefault(job.split(":")[0], set()).add(int(found[1]) if found else 0)
    assert SUPERVISOR_RULES <= priorities.keys() and "train_student" in priorities
    for rule, seen in priorities.items():
        assert seen == ({1} if rule in SUPERVISOR_RULES | OTHER_SUPERVISOR_RULES else {0}), rule


def test_readme_shortcut_one_seed_of_the_default_config(tmp_path):
    """The README's `snakemake --cores all --config 'seeds=[0]'`, as a dry run: Snakemake hands the seed over
    as the string '0'. The Snakefile's own `configfile:` reads config/config.yaml in the working directory."""
    (tmp_path / "config").symlink_to(ROOT / "config")
    proc = subprocess.run(
        [*SNAKEMAKE, "--directory", str(tmp_path), "-n", "--cores", "all", "--config", "seeds=[0]", "--quiet", "rules"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    config = validate_config(yaml.safe_load((ROOT / "config" / "config.yaml").read_text()))
    counts = job_counts(proc.stdout)
    assert counts["train_weak"] == counts["splits"] == len(config["tasks"])
    assert counts["cell_metrics"] == len(intervention_cells(config["interventions"])) * len(config["tasks"])


def test_size_plot_only_for_strong_models_of_several_known_sizes(tmp_path):
    sized = job_counts(snakemake(tmp_path, hub_config(tasks=["sciq"], seeds=[0]), "-n", "--quiet", "rules").stdout)
    assert sized["size_plot"] == 1
    config = hub_config(tasks=["sciq"], seeds=[0])
    del config["models"]["gpt2-large"]["size"]
    unsized = job_counts(snakemake(tmp_path, config, "-n", "--quiet", "rules").stdout)
    assert "size_plot" not in unsized and unsized["plots"] == 1


def test_bootstrap_chain_steps_are_shared_by_strong_models(tmp_path):
    config = hub_config(
        tasks=["sciq"],
        seeds=[0],
        interventions={"xent": {"loss": "xent"}, "boot": {"bootstrap": {"via": ["gpt2-medium", "gpt2-large"]}}},
    )
    counts = job_counts(snakemake(tmp_path, config, "-n", "--quiet", "rules").stdout)
    # Two intermediate steps per (task, weak, seed), shared by both strong models; four students.
    assert counts["bootstrap_step"] == 2 and counts["train_student"] == 4


def test_gpu_rules_carry_the_gpu_resource(tmp_path):
    out = snakemake(tmp_path, hub_config(tasks=["sciq"], seeds=[0]), "-n", "-p").stdout
    weak_job = out.split("rule train_weak:")[1].split("rule ")[0]
    assert re.search(r"resources:.*\bgpu=1\b", weak_job)


@pytest.mark.parametrize("preset", sorted(p.name for p in (ROOT / "config").glob("*.yaml")))
def test_every_preset_validates_and_plans_a_dag(tmp_path, preset):
    config = yaml.safe_load((ROOT / "config" / preset).read_text())
    counts = job_counts(snakemake(tmp_path, config, "-n", "--quiet", "rules").stdout)
    cells = intervention_cells(validate_config(config)["interventions"])
    runs = len(config["tasks"]) * len(config["seeds"]) * len(config["weak_models"]) * len(config["strong_models"])
    assert counts["cell_metrics"] == len(cells) * runs


def test_gpu_model_becomes_a_resource_of_that_models_jobs_only(tmp_path):
    config = hub_config(tasks=["sciq"], seeds=[0])
    config["models"]["gpt2-large"]["gpu_model"] = "h100"
    out = snakemake(tmp_path, config, "-n", "-p").stdout
    ceilings = {
        "large" if "strong=gpt2-large" in job else "medium": job
        for job in (block.split("rule ")[0] for block in out.split("rule train_ceiling:")[1:])
    }
    assert "gpu_model=h100" in ceilings["large"] and "gpu_model=h100" not in ceilings["medium"]


def test_bad_config_stops_before_any_job(tmp_path):
    proc = snakemake(tmp_path, hub_config(tasks=["sciq", "mnist"]), "-n", check=False)
    assert proc.returncode != 0
    assert "'tasks[1]': unknown task 'mnist'" in proc.stdout + proc.stderr


def test_lint_is_clean_on_the_test_config():
    """`snakemake --directory .test --lint`, the catalog's convention, as CI runs it."""
    proc = subprocess.run([*SNAKEMAKE, "--directory", str(TEST_DIR), "--lint"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Congratulations, your workflow is in a good condition!" in proc.stdout + proc.stderr


def test_committed_tiny_models_are_the_ones_tiny_models_builds(tmp_path):
    """The .test config's tiny models are committed so that the config runs as it is; they must stay what
    tests/tiny_models.py builds, so that they can be rebuilt and reviewed."""
    built = {
        TINY_BERT: tiny_bert(tmp_path / "tiny-bert"),
        TEST_DIR / "models" / "tiny-llama": tiny_decoder(tmp_path / "tiny-llama", "llama", hidden=32, layers=2, seed=0),
        TEST_DIR / "models" / "tiny-llama-small": tiny_decoder(
            tmp_path / "tiny-llama-small", "llama", hidden=16, layers=1, seed=1
        ),
    }
    for committed, rebuilt in built.items():
        for name in ("model.safetensors", "vocab.txt", "config.json"):
            assert (rebuilt / name).read_bytes() == (committed / name).read_bytes(), (committed.name, name)


def preds(path) -> pd.Series:
    return pd.read_parquet(path).set_index("id")["soft_pred"]


def labels(folder) -> pd.Series:
    return pd.read_parquet(folder / "train.parquet").set_index("id")["soft_label"]


@pytest.mark.e2e
def test_end_to_end_tiny_config(e2e_run):
    """The .test config: every intervention kind (tiny random BERT -> MiniLM on SMS spam, two seeds; the
    decoder cells are checked in test_end_to_end_decoder_cells)."""
    tmp_path, config = e2e_run, e2e_config()
    names = set(intervention_cells(validate_config(copy.deepcopy(config))["interventions"]))

    summary = pd.read_csv(tmp_path / "results" / "summary.csv")
    assert len(summary) == 2 * len(names) and set(summary["intervention"]) == names
    assert all(sorted(seeds) == [0, 1] for seeds in summary.groupby("intervention")["seed"].apply(list))
    # Each cell ran with the models its entry names, or the sweep's.
    pairs = summary.groupby("intervention")[["weak", "strong"]].agg(lambda v: sorted(set(v)))
    for name, entry in config["interventions"].items():
        for role, column in (("weak_models", "weak"), ("strong_models", "strong")):
            expected = entry.get(role) or config[role]
            assert (
                pairs.loc[[n for n in pairs.index if n == name or n.startswith(f"{name}_it")], column]
                .map(lambda v, expected=expected: v == sorted(expected))
                .all()
            ), (name, role)
    decoder_rows = summary["strong"] != "minilm"
    summary = summary[~decoder_rows]
    names = set(summary["intervention"])
    probe_rows = summary[summary["intervention"] == "knn_filter"]
    assert probe_rows["probe_acc_vs_gt"].between(0, 1).all()
    assert (probe_rows["dropped_frac_train"] > 0).all()
    assert summary.loc[summary["intervention"] == "xent", "probe_acc_vs_gt"].isna().all()
    for col in ("weak_acc", "ceiling_acc", "student_acc", "weak_auroc", "ceiling_auroc", "student_auroc"):
        assert summary[col].between(0, 1).all(), col
    gap = summary["ceiling_acc"] - summary["weak_acc"]
    expected = (summary["student_acc"] - summary["weak_acc"]) / gap
    assert ((summary["pgr_acc"] - expected).abs() < 1e-9).all()
    # The pretrained strong model beats a random tiny weak model on a balanced task.
    assert (summary["ceiling_acc"] > summary["weak_acc"]).all()
    assert summary["pgr_acc_undefined"].isna().all()  # every gap is above the margin: no reason given
    # The four (weak, ceiling) right/wrong regions split the test set; deception is an error rate in one.
    regions = [f"n_weak_{w}_ceiling_{c}" for w in ("right", "wrong") for c in ("right", "wrong")]
    assert (summary[regions].sum(axis=1) == summary["n_test"]).all()
    region = summary["student_acc_weak_wrong_ceiling_right"]
    assert ((summary["deception_score"] - (1 - region)).abs() < 1e-9)[region.notna()].all()
    assert summary["agreement"].between(0, 1).all()

    agg = pd.read_csv(tmp_path / "results" / "aggregate.csv")
    assert (agg["n_seeds"] == 2).all()
    agg = agg[agg["strong"] == "minilm"]
    assert set(agg["intervention"]) == names
    for m in ("student_acc", "ceiling_auroc"):
        assert ((agg[f"{m}_lo"] <= agg[m]) & (agg[m] <= agg[f"{m}_hi"])).all()
    xent_rows = summary[summary["intervention"] == "xent"]
    assert agg.loc[agg["intervention"] == "xent", "student_acc"].item() == pytest.approx(
        xent_rows["student_acc"].mean()
    )
    median_pgr = pd.read_csv(tmp_path / "results" / "median_pgr.csv")
    assert len(median_pgr[median_pgr["strong"] == "minilm"]) == len(names)
    # Imitation pooled over the two seeds: overall agreement, as both seeds have 64 test examples, is their mean.
    assert agg.loc[agg["intervention"] == "xent", "agreement"].item() == pytest.approx(xent_rows["agreement"].mean())
    weak_wrong = summary.groupby("intervention")["n_weak_wrong"].sum()
    assert (agg["n_weak_wrong"].to_numpy() == weak_wrong.loc[agg["intervention"]].to_numpy()).all()
    assert (tmp_path / "results" / "plots" / "w2s_imitation.png").stat().st_size > 10_000

    results = tmp_path / "results" / "sms_spam"
    for seed in (0, 1):
        run = results / f"seed{seed}"
        label_dirs = run / "labels" / "tiny" / "minilm"
        students = run / "student" / "tiny" / "minilm"
        for folder in label_dirs.iterdir():
            for name in ("train", "val"):
                # No ground truth reaches a student, whatever its label source.
                assert list(pd.read_parquet(folder / f"{name}.parquet").columns) == ["id", "text", "soft_label"]
        # The filter drops floor(0.2 * (64 + 32)) of strong_train and val together.
        knn = label_dirs / "knn_filter"
        assert sum(len(pd.read_parquet(knn / f"{n}.parquet")) for n in ("train", "val")) == 96 - 19
        # Strong-to-strong: each iteration learns the previous student's predictions on strong_train.
        assert labels(label_dirs / "s2s_it1").equals(
            preds(students / "xent" / "strong_train.parquet").rename("soft_label")
        )
        assert labels(label_dirs / "s2s_it2").equals(
            preds(students / "s2s_it1" / "strong_train.parquet").rename("soft_label")
        )
        # Bootstrap: the student learns the intermediate model's predictions, not the weak model's.
        step = run / "bootstrap" / "tiny" / "bootstrap" / "step1"
        assert labels(label_dirs / "bootstrap").equals(preds(step / "strong_train.parquet").rename("soft_label"))
        # Ensemble: the mean of the shared weak model and its seed replica.
        weak = run / "weak" / "tiny"
        mean = (preds(weak / "strong_train.parquet") + preds(weak / "replica1" / "strong_train.parquet")) / 2
        ensemble = labels(label_dirs / "ensemble")
        assert ((ensemble - mean.loc[ensemble.index]).abs() < 1e-12).all()
        assert not preds(weak / "strong_train.parquet").equals(preds(weak / "replica1" / "strong_train.parquet"))
        split_ids = [set(pd.read_parquet(p)["id"]) for p in (run / "splits").glob("*.parquet")]
        assert sum(map(len, split_ids)) == len(set().union(*split_ids))
    assert (tmp_path / "results" / "plots" / "w2s_results.png").stat().st_size > 10_000
    assert not list(tmp_path.glob("results/**/*.part"))
    assert not list(tmp_path.glob("results/**/checkpoint"))

    # A rerun has nothing left to do: finished work is never redone.
    rerun = snakemake(tmp_path, config, "-n")
    assert "Nothing to be done" in rerun.stdout + rerun.stderr

    # The README's redraws. With the run's config, the plot is redrawn and nothing is trained.
    plot = tmp_path / "results" / "plots" / "w2s_results.png"
    plot.unlink()
    redraw = snakemake(tmp_path, config, "--cores", "1", "plots")
    assert set(job_counts(redraw.stdout + redraw.stderr)) == {"plots", "total"} and plot.exists()
    # The report, given the run's config, finds every file's metadata.
    html = tmp_path / "report.html"
    bundled = snakemake(tmp_path, config, "--report", str(html))
    assert "Missing metadata" not in bundled.stdout + bundled.stderr and html.stat().st_size > 10_000
    # w2s-report draws whatever has finished, whatever the config, and plans no job.
    report = Path(sys.executable).with_name("w2s-report")
    subprocess.run([str(report), "--results", str(tmp_path / "results")], check=True, capture_output=True)
    partial = tmp_path / "results" / "partial"
    assert len(pd.read_csv(partial / "summary.csv")) == 2 * len(config["interventions"]) + 2  # s2s: 2 cells
    assert (partial / "w2s_results.png").stat().st_size > 10_000
    assert (partial / "w2s_imitation.png").stat().st_size > 10_000


@pytest.mark.e2e
def test_end_to_end_decoder_cells(e2e_run):
    """The .test config's cells on tiny random Llamas: prompting, debate, logit fusion, generative finetuning,
    decoders as weak, intermediate and strong models; and a conflicting objective beside the weak labels."""
    results = e2e_run / "results"
    summary = pd.read_csv(results / "summary.csv").set_index(["intervention", "seed"])
    assert summary.loc[["zeroshot", "fewshot_weak", "debate"], "strong"].eq("lm").all()
    assert summary.loc[["fusion", "proxy_tuning", "xent_decoders", "bootstrap_decoders"], "weak"].eq("lm_small").all()
    assert summary.loc["xent_generative", "strong"].eq("lm_gen").all()
    # Prompting with weak demonstrations, debate and fusion are W2S results, not references.
    references = set(summary.index[summary["reference"]].get_level_values("intervention"))
    assert references == {"lp_ground_truth", "finetune_lp_ground_truth"}
    for seed in (0, 1):
        run = results / "sms_spam" / f"seed{seed}"
        splits = {s: pd.read_parquet(run / "splits" / f"{s}.parquet") for s in layout.SPLITS}
        test_ids = splits["test"]["id"].tolist()

        # Prompting: p(class 1) of every test example; demonstrations are strong_train examples.
        for name, shots in (("zeroshot", 0), ("fewshot_weak", 4)):
            folder = run / "student" / "tiny" / "lm" / name
            prompted = pd.read_parquet(folder / "test.parquet")
            assert prompted["id"].tolist() == test_ids and prompted["soft_pred"].between(0, 1).all()
            assert all(
                len(ids) == shots and set(ids) <= set(splits["strong_train"]["id"]) for ids in prompted["demo_ids"]
            )
            assert json.loads((folder / "info.json").read_text())["role"] == "prompt"

        # Debate: the strong decoder's transcripts of every split, keyed by id, read by two weak replicas whose
        # mean on strong_train is the student's label on the plain text.
        for name, split in splits.items():
            transcripts = pd.read_parquet(run / "debate" / "lm" / f"{name}.parquet")
            assert transcripts["id"].tolist() == split["id"].tolist()
            assert all(t.startswith("Debater for No: ") for t in transcripts["transcript"])
        replicas = [run / "debate_weak" / "tiny" / "lm" / f"replica{r}" for r in range(2)]
        members = [preds(r / "strong_train.parquet").sort_index() for r in replicas]
        assert not members[0].equals(members[1])
        debate = pd.read_parquet(run / "labels" / "tiny" / "lm" / "debate" / "train.parquet").set_index("id")
        assert debate["text"].equals(splits["strong_train"].set_index("id")["text"])
        pd.testing.assert_series_equal(
            debate["soft_label"].sort_index(), (members[0] + members[1]) / 2, check_names=False
        )
        infos = [json.loads((r / "info.json").read_text()) for r in replicas]
        assert [i["seed"] for i in infos] == [seed, seed + 1000]

        # Logit fusion: both cells read one expert, trained on weak_train ground truth and deleted afterwards.
        [expert] = (run / "fusion_expert" / "lm_small").iterdir()
        assert not (expert / "model").exists()
        expert_info = json.loads((expert / "info.json").read_text())
        assert expert_info["role"] == "fusion_expert" and expert_info["n_train"] == 48
        fused = {
            n: pd.read_parquet(run / "student" / "lm_small" / "lm" / n / "test.parquet")
            for n in ("fusion", "proxy_tuning")
        }
        assert (fused["proxy_tuning"]["alpha"] == 1.0).all()
        reached = ~fused["fusion"]["capped"]
        assert np.allclose(fused["fusion"]["kl_fused"][reached], fused["fusion"]["kl_expert"][reached], rtol=1e-3)
        pd.testing.assert_series_equal(fused["fusion"]["strong_soft_pred"], fused["proxy_tuning"]["strong_soft_pred"])

        # Generative finetuning: lm_gen's ceiling and student start from the seed's finetuned lm, which
        # read the training texts and no label.
        generative = json.loads((run / "generative" / "lm_gen" / "info.json").read_text())
        assert generative["texts"] == 48 + 64 and generative["seed"] == seed
        gen_dir = layout.generative_outputs("lm_gen")["model"].format(task="sms_spam", seed=seed)
        for job in ("ceiling/lm_gen", "student/tiny/lm_gen/xent_generative", "student/tiny/lm_gen/knn_generative"):
            assert json.loads((run / job / "info.json").read_text())["model_path"] == gen_dir
        assert json.loads((run / "ceiling" / "lm" / "info.json").read_text())["model_path"].endswith("tiny-llama")
        # Its frozen features are the seed's own; its weights are gone once every job that loads them finished.
        assert (run / "activations" / "lm_gen.safetensors").exists() and not (e2e_run / gen_dir).exists()

        # Decoders as weak model and intermediate: the bootstrap student learns the intermediate's predictions.
        step = run / "bootstrap" / "lm_small" / "bootstrap_decoders" / "step1"
        assert labels(run / "labels" / "lm_small" / "lm" / "bootstrap_decoders").equals(
            preds(step / "strong_train.parquet").rename("soft_label")
        )
        assert preds(run / "student" / "lm_small" / "lm" / "xent_decoders" / "test.parquet").between(0, 1).all()

        # A conflicting objective: the student trained on its weak labels plus 16 tweets with ground truth.
        conflict = json.loads((run / "student" / "tiny" / "minilm" / "conflict" / "info.json").read_text())
        assert (
            conflict["train_labels"]["conflict"]["task"] == "tweets" and conflict["train_labels"]["conflict"]["n"] == 16
        )
        assert conflict["n_train"] == 64 + 16


@pytest.mark.e2e
def test_end_to_end_frozen_lower_blocks(e2e_run):
    """minilm_top trains its top 2 blocks on the states of its lower 4, which one job computed for every text
    its jobs read (a strong model's: no weak_train); its ceiling and student read them."""
    results = e2e_run / "results"
    states_path = layout.lower_states_path("minilm_top").format(task="sms_spam")
    lower = LowerStates.load(e2e_run / states_path)
    texts = {
        t
        for seed in (0, 1)
        for s in layout.STRONG_SPLITS
        for t in pd.read_parquet(results / "sms_spam" / f"seed{seed}" / "splits" / f"{s}.parquet")["text"]
    }
    assert lower.frozen_layers == 4 and set(lower.texts) == texts and len(lower.texts) == len(texts)
    assert lower.states.shape == (1 + lower.offsets[-1], 384)
    summary = pd.read_csv(results / "summary.csv").set_index(["intervention", "seed"])
    assert summary.loc["xent_frozen", "strong"].eq("minilm_top").all()
    for seed in (0, 1):
        run = results / "sms_spam" / f"seed{seed}"
        for job in ("ceiling/minilm_top", "student/tiny/minilm_top/xent_frozen"):
            assert json.loads((run / job / "info.json").read_text())["lower_states"] == states_path
        assert json.loads((run / "ceiling" / "minilm" / "info.json").read_text())["lower_states"] is None
        assert not preds(run / "ceiling" / "minilm_top" / "test.parquet").equals(
            preds(run / "ceiling" / "minilm" / "test.parquet")
        )
