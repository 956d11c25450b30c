"""Every hub task: the five of openai/weak-to-strong, the 25 of EleutherAI/w2s under its names, the two
objectives of Anthropic HH-RLHF, and chess puzzles. docs/tasks.md is their catalogue.

n_examples: the documented sizes of the pooled splits (an upper bound on the usable examples). Only
splits whose labels are public are pooled. A repository that holds only a loading script (which
datasets>=4 refuses to run) is read from the hub's automatic Parquet conversion, `refs/convert/parquet`,
whose folders are the script's configs (hence `data_dir`).
"""

from __future__ import annotations

from .chess_puzzles import format_chess_puzzle
from .classification import (
    format_amazon_polarity,
    format_anli,
    format_ethics_deontology,
    format_ethics_justice,
    format_ethics_virtue,
    format_paws,
    format_sentence,
    format_twitter_sentiment,
    format_wic,
)
from .multiple_choice import (
    format_cosmos_qa,
    format_dream,
    format_ethics_utilitarianism,
    format_hellaswag,
    format_openbookqa,
    format_piqa,
    format_quail,
    format_quartz,
    format_sciq,
    format_sciq_with_support,
    format_social_i_qa,
    has_support,
)
from .question_answering import format_boolq, format_mc_taco, format_multirc
from .registry import HubSource, Task
from .reward_modelling import format_anthropic_hh, has_preferred_side

PARQUET_CONVERSION = "refs/convert/parquet"
LICHESS_REVISION = "950f927767db79497dab436d873d7c743aca923d"

BURNS_TASKS = (
    Task(
        name="boolq",
        description="BoolQ: a Wikipedia passage and a yes/no question; label = the answer is yes.",
        n_examples=9_427 + 3_270,
        source=HubSource(path="google/boolq", splits=("train", "validation"), format=format_boolq),
    ),
    Task(
        name="sciq",
        description="SciQ: a science question with the correct answer or a distractor (50/50); label = correct.",
        n_examples=11_679 + 1_000 + 1_000,
        source=HubSource(path="allenai/sciq", splits=("train", "validation", "test"), format=format_sciq),
    ),
    Task(
        name="amazon_polarity",
        description="Amazon review polarity: review title and body; label = positive.",
        n_examples=3_600_000 + 400_000,
        source=HubSource(path="fancyzhx/amazon_polarity", splits=("train", "test"), format=format_amazon_polarity),
    ),
    Task(
        name="anthropic_hh",
        description="Anthropic HH-RLHF: a conversation and two responses in random order; label = A is preferred.",
        n_examples=160_800 + 8_552,
        source=HubSource(
            path="Anthropic/hh-rlhf", splits=("train", "test"), format=format_anthropic_hh, keep=has_preferred_side
        ),
    ),
    Task(
        name="cosmos_qa",
        description="Cosmos QA: a narrative, a question and the correct or a wrong answer; label = correct.",
        n_examples=25_262 + 2_985,
        source=HubSource(
            path="allenai/cosmos_qa",
            # The test split's labels are hidden.
            splits=("train", "validation"),
            format=format_cosmos_qa,
            revision=PARQUET_CONVERSION,
        ),
    ),
)

ELEUTHER_ONLY_TASKS = (
    Task(
        name="anli-r2",
        description="ANLI round 2: premise and hypothesis; label = entailment (vs neutral or contradiction).",
        n_examples=45_460 + 1_000 + 1_000,
        source=HubSource(
            path="facebook/anli", config="plain_text", splits=("train_r2", "dev_r2", "test_r2"), format=format_anli
        ),
    ),
    Task(
        name="cola",
        description="CoLA: a sentence; label = grammatically acceptable. The test split's labels are hidden.",
        n_examples=8_551 + 1_043,
        source=HubSource(path="nyu-mll/glue", config="cola", splits=("train", "validation"), format=format_sentence),
    ),
    Task(
        name="dream",
        description="DREAM: a dialogue, a question and the correct or a wrong answer (50/50); label = correct. "
        "A wrong answer equal to the correct one is never shown.",
        n_examples=6_116 + 2_040 + 2_041,
        source=HubSource(
            path="dataset-org/dream",
            data_dir="plain_text",
            revision=PARQUET_CONVERSION,
            splits=("train", "validation", "test"),
            format=format_dream,
        ),
    ),
    Task(
        name="ethics-deontology",
        description="ETHICS deontology: a scenario and an excuse; label = the excuse is morally valid.",
        n_examples=18_164 + 3_596,
        source=HubSource(
            path="hendrycks/ethics",
            data_dir="deontology",
            revision=PARQUET_CONVERSION,
            splits=("train", "test"),
            format=format_ethics_deontology,
        ),
    ),
    Task(
        name="ethics-justice",
        description="ETHICS justice: a statement; label = it is just.",
        n_examples=21_791 + 2_704,
        source=HubSource(
            path="hendrycks/ethics",
            data_dir="justice",
            revision=PARQUET_CONVERSION,
            splits=("train", "test"),
            format=format_ethics_justice,
        ),
    ),
    Task(
        name="ethics-virtue",
        description="ETHICS virtue: a behaviour and a trait (split at the hub's [SEP], which EleutherAI/w2s "
        "left in the text); label = the behaviour shows the trait.",
        n_examples=28_245 + 4_975,
        source=HubSource(
            path="hendrycks/ethics",
            data_dir="virtue",
            revision=PARQUET_CONVERSION,
            splits=("train", "test"),
            format=format_ethics_virtue,
        ),
    ),
    Task(
        name="ethics-utilitarianism",
        description="ETHICS utilitarianism: two scenarios in random order and a claim which is more pleasant "
        "(50/50); label = the claim is right.",
        n_examples=13_737 + 4_807,
        source=HubSource(
            path="hendrycks/ethics",
            data_dir="utilitarianism",
            revision=PARQUET_CONVERSION,
            splits=("train", "test"),
            format=format_ethics_utilitarianism,
        ),
    ),
    Task(
        name="mc_taco",
        description="MC-TACO: a sentence, a temporal question and a candidate answer; label = plausible.",
        n_examples=3_783 + 9_442,
        source=HubSource(
            path="CogComp/mc_taco",
            data_dir="plain_text",
            revision=PARQUET_CONVERSION,
            splits=("validation", "test"),
            format=format_mc_taco,
        ),
    ),
    Task(
        name="hellaswag",
        description="HellaSwag: a context, its four endings and one of them, the right one or a wrong one "
        "(50/50); label = right. The test split's labels are hidden.",
        n_examples=39_905 + 10_042,
        source=HubSource(
            path="Rowan/hellaswag",
            data_dir="default",
            revision=PARQUET_CONVERSION,
            splits=("train", "validation"),
            format=format_hellaswag,
        ),
    ),
    Task(
        name="multirc",
        description="MultiRC: a passage, a question and a candidate answer; label = true. The test split's "
        "labels are hidden.",
        n_examples=27_243 + 4_848,
        source=HubSource(
            path="aps/super_glue",
            data_dir="multirc",
            revision=PARQUET_CONVERSION,
            splits=("train", "validation"),
            format=format_multirc,
        ),
    ),
    Task(
        name="openbookqa",
        description="OpenBookQA: a question, its choices and one choice's text, correct or not (50/50); label = "
        "correct. EleutherAI/w2s showed the answer key's letter when correct and a choice's text when not, "
        "which leaked the label.",
        n_examples=4_957 + 500 + 500,
        source=HubSource(
            path="allenai/openbookqa", config="main", splits=("train", "validation", "test"), format=format_openbookqa
        ),
    ),
    Task(
        name="paws",
        description="PAWS (labeled_final): two sentences; label = paraphrases.",
        n_examples=49_401 + 8_000 + 8_000,
        source=HubSource(
            path="google-research-datasets/paws",
            config="labeled_final",
            splits=("train", "validation", "test"),
            format=format_paws,
        ),
    ),
    Task(
        name="piqa",
        description="PIQA: a goal and the right or the wrong solution (50/50); label = right. The test "
        "split's labels are hidden.",
        n_examples=16_113 + 1_838,
        source=HubSource(
            path="ybisk/piqa",
            data_dir="plain_text",
            revision=PARQUET_CONVERSION,
            splits=("train", "validation"),
            format=format_piqa,
        ),
    ),
    Task(
        name="quail",
        description="QuAIL: a passage, a question and the correct or a wrong answer (50/50); label = correct.",
        n_examples=10_246 + 2_164,
        source=HubSource(
            path="textmachinelab/quail",
            data_dir="quail",
            revision=PARQUET_CONVERSION,
            splits=("train", "validation"),
            format=format_quail,
        ),
    ),
    Task(
        name="quartz",
        description="QuaRTz: a passage, a question and the correct or the wrong answer (50/50); label = correct.",
        n_examples=2_696 + 384 + 784,
        source=HubSource(
            path="allenai/quartz",
            data_dir="default",
            revision=PARQUET_CONVERSION,
            splits=("train", "validation", "test"),
            format=format_quartz,
        ),
    ),
    Task(
        name="social_i_qa",
        description="Social IQa: a situation, a question, its three choices and one of them, correct or not "
        "(50/50); label = correct.",
        n_examples=33_410 + 1_954,
        source=HubSource(
            path="allenai/social_i_qa",
            data_dir="default",
            revision=PARQUET_CONVERSION,
            splits=("train", "validation"),
            format=format_social_i_qa,
        ),
    ),
    Task(
        name="sst2",
        description="SST-2: a movie-review sentence or phrase; label = positive. The test split's labels are hidden.",
        n_examples=67_349 + 872,
        source=HubSource(path="stanfordnlp/sst2", splits=("train", "validation"), format=format_sentence),
    ),
    Task(
        name="wic",
        description="WiC: two sentences and a word in both; label = the word means the same. The test split's "
        "labels are hidden.",
        n_examples=5_428 + 638,
        source=HubSource(
            path="aps/super_glue",
            data_dir="wic",
            revision=PARQUET_CONVERSION,
            splits=("train", "validation"),
            format=format_wic,
        ),
    ),
    Task(
        name="twitter-sentiment",
        description="Twitter sentiment (EleutherAI's copy of Sentiment140): a tweet; label = positive.",
        n_examples=1_580_000,
        source=HubSource(
            path="EleutherAI/twitter-sentiment", splits=("train", "test"), format=format_twitter_sentiment
        ),
    ),
    Task(
        name="sciq_with_support",
        description="SciQ with its support passage: the passage, the question and the correct answer or a "
        "distractor (50/50); label = correct. Records without a support passage are left out (EleutherAI/w2s "
        "kept them with an empty passage, and a 'Name: Bob' header from another project).",
        n_examples=11_679 + 1_000 + 1_000,
        source=HubSource(
            path="allenai/sciq",
            splits=("train", "validation", "test"),
            format=format_sciq_with_support,
            keep=has_support,
        ),
    ),
)

EXTRA_TASKS = (
    Task(
        name="anthropic_hh_helpful",
        description="Anthropic HH-RLHF, helpfulness (helpful-base): a conversation and two responses in random "
        "order; label = A is preferred.",
        n_examples=43_835 + 2_354,
        source=HubSource(
            path="Anthropic/hh-rlhf",
            data_dir="helpful-base",
            splits=("train", "test"),
            format=format_anthropic_hh,
            keep=has_preferred_side,
        ),
    ),
    Task(
        name="anthropic_hh_harmless",
        description="Anthropic HH-RLHF, harmlessness (harmless-base): a conversation and two responses in random "
        "order; label = A is preferred.",
        n_examples=42_537 + 2_312,
        source=HubSource(
            path="Anthropic/hh-rlhf",
            data_dir="harmless-base",
            splits=("train", "test"),
            format=format_anthropic_hh,
            keep=has_preferred_side,
        ),
    ),
    Task(
        name="chess_puzzles",
        description="Lichess puzzles: the position after the opponent's move and a candidate move, the "
        "solution's first move or another legal move (50/50); label = it is the solution's move.",
        n_examples=50_000,
        source=HubSource(
            path="Lichess/chess-puzzles",
            revision=LICHESS_REVISION,
            splits=("train",),
            format=format_chess_puzzle,
            rating="Rating",
            # Checking legality in pure Python takes about 7 ms a puzzle: 4 million would take 8 hours.
            pool_size=50_000,
        ),
    ),
)

HUB_TASKS = BURNS_TASKS + ELEUTHER_ONLY_TASKS + EXTRA_TASKS
