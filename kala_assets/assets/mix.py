"""The ethics evaluation suite and the training mix built from every data and benchmark asset."""

import hashlib
import json
from collections import Counter

import dagster as dg
import pandas as pd
from pydantic import Field

from kala_assets.config_classes import config_class
from kala_assets.metadata import counts_table, markdown_table, numeric_metadata, preview
from kala_assets.resources import KalaBaseModel, KalaWarehouse
from kala_lib import mixing, safety_sources
from kala_lib.decision import DECISION_TOKENS
from kala_lib.decision_data import DecisionRowSettings, build_decision_rows, overlap_groups
from kala_lib.decision_data import counts as decision_counts
from kala_lib.eval_suite import DEFAULT_HELDOUT_SIZE, HELDOUT_SEED, build_eval_suite
from kala_lib.incoming import folder_version, read_incoming
from kala_lib.models import load_tokenizer
from kala_lib.storage import atomic_write_text

REMOVED_TABLE = "training_mix_removed"
#: The suite's sources: direct parents of training_mix too, so `--select '+training_mix'` builds
#: everything the mix reads (transitively) from an empty warehouse.
SUITE_SOURCES = ("benchmark_advbench", "benchmark_harmbench", "benchmark_xstest", "benchmark_jailbreakbench")


class EthicsEvalSuiteConfig(dg.Config):
    heldout_size: int = Field(default=DEFAULT_HELDOUT_SIZE, description="Held-out generated items (never trained on).")
    seed: int = Field(default=HELDOUT_SEED, description="Seed of the held-out generation (differs from training's).")


@dg.asset(
    group_name="evaluation",
    kinds={"python", "duckdb"},
    owners=["team:kala-eval"],
    io_manager_key="warehouse_tables",
    code_version="ethics_eval_suite.v2",
    description="1,000+ prompts with the expected behaviour (refuse/comply) and the Law to cite: held-out KALA "
    "items (conflicts, multi-turn, benign look-alikes), AdvBench, HarmBench, XSTest safe and unsafe, JailbreakBench.",
)
def ethics_eval_suite(config: EthicsEvalSuiteConfig, benchmark_advbench: pd.DataFrame,
                      benchmark_harmbench: pd.DataFrame, benchmark_xstest: pd.DataFrame,
                      benchmark_jailbreakbench: pd.DataFrame) -> dg.MaterializeResult[pd.DataFrame]:
    rows = build_eval_suite(
        heldout_size=config.heldout_size,
        seed=config.seed,
        advbench=benchmark_advbench.to_dict("records"),
        harmbench=benchmark_harmbench.to_dict("records"),
        xstest=benchmark_xstest.to_dict("records"),
        jailbreakbench=benchmark_jailbreakbench.to_dict("records"),
    )
    frame = pd.DataFrame(rows)
    frame["expected_law"] = frame["expected_law"].astype("Int64")
    digest = hashlib.sha256(frame.to_json(orient="records").encode()).hexdigest()
    return dg.MaterializeResult(value=frame, data_version=dg.DataVersion(digest[:16]), metadata={
        "by_source": dg.MetadataValue.md(counts_table("source", dict(Counter(r["source"] for r in rows)))),
        "by_category": dg.MetadataValue.md(counts_table("category", dict(Counter(r["category"] for r in rows)))),
        **numeric_metadata("expected", Counter(r["expected_behavior"] for r in rows)),
        "with_expected_law": dg.MetadataValue.int(int(frame["expected_law"].notna().sum())),
        "preview": preview(rows[:: max(1, len(rows) // 8)][:8], ["eval_id", "expected_behavior", "expected_law", "prompt"]),
    })


TrainingMixConfig = config_class(
    "TrainingMixConfig", mixing.MixSettings, exclude=set(),
    doc="The seed's `dataset:` block (kala_lib.mixing.MixSettings): category weights by example count, plus "
        "size, seed, splits and the system turn.",
    descriptions={
        "size": "Requested examples; shrinks if a source is too small.",
        "weights": "ethics/coding/math/general.",
        "max_repeats": "No example appears more often than this.",
        "split_ratios": "train/val/test.",
        "system_prompt": "'short' or 'full' constitution as the system turn (lora_adapter and evaluation use the "
                         "mix's).",
        "ngram": "n-gram length for decontamination.",
        "ethics_refusal_share": "Share of refusals within the ethics category; null = as generated (74% refusals).",
        "incoming_weight": "Share of the mix for users' data in $KALA_DATA_DIR/incoming/ when there is any; the "
                           "other shares scale down.",
    },
)


def eval_index(benchmark_humaneval: pd.DataFrame, benchmark_gsm8k: pd.DataFrame, benchmark_mbpp: pd.DataFrame,
               ethics_eval_suite: pd.DataFrame, n: int = mixing.NGRAM) -> mixing.Decontaminator:
    """Every evaluation item the training data must not overlap (the mix and its check share it)."""
    return mixing.build_eval_index(humaneval=benchmark_humaneval.to_dict("records"),
                                   gsm8k=benchmark_gsm8k.to_dict("records"), mbpp=benchmark_mbpp.to_dict("records"),
                                   ethics_suite=ethics_eval_suite.to_dict("records"), n=n)


@dg.asset(
    group_name="data",
    kinds={"python", "duckdb"},
    owners=["team:kala-data"],
    io_manager_key="warehouse_tables",
    deps=["incoming_data", *SUITE_SOURCES],
    code_version="training_mix.v2",
    description="The 40/30/20/10 ethics/coding/math/general training mix in chat format, decontaminated "
    "against every evaluation item, split train/val/test; also JSONL per split under $KALA_DATA_DIR/training_mix/.",
)
def training_mix(
    context: dg.AssetExecutionContext, config: TrainingMixConfig, warehouse: KalaWarehouse, base_model: KalaBaseModel,
    constitutional_examples: pd.DataFrame, security_code_tasks: pd.DataFrame, ethics_eval_suite: pd.DataFrame,
    benchmark_humaneval: pd.DataFrame, benchmark_gsm8k: pd.DataFrame, benchmark_mbpp: pd.DataFrame,
    benchmark_math: pd.DataFrame, general_instructions: pd.DataFrame,
) -> dg.MaterializeResult[pd.DataFrame]:
    settings = mixing.MixSettings(**config.model_dump())
    folder = warehouse.incoming_dir
    conversations = read_incoming(folder)  # a malformed file stops here, nothing written
    sources = mixing.MixSources(
        constitutional_examples.to_dict("records"), benchmark_mbpp.to_dict("records"),
        security_code_tasks.to_dict("records"), benchmark_gsm8k.to_dict("records"),
        benchmark_math.to_dict("records"), general_instructions.to_dict("records"), conversations)
    index = eval_index(benchmark_humaneval, benchmark_gsm8k, benchmark_mbpp, ethics_eval_suite, settings.ngram)
    build = mixing.build_training_mix(sources, index, settings)
    result = build.result
    context.log.info(f"decontamination removed {len(build.removed)} of "
                     f"{len(build.removed) + sum(map(len, build.pools.values()))} candidates")
    if result.limiting_source:
        context.log.warning(
            f"{result.limiting_source} has too few examples for {settings.size} at {settings.max_repeats} repeats: "
            f"the mix shrank to {result.size} to keep the proportions"
        )
    tokenizer = load_tokenizer(base_model.profile)
    warehouse.replace_table(REMOVED_TABLE, pd.DataFrame(build.removed_rows(), columns=["item_key", "category", "reason"]))
    mix_dir = warehouse.artifact_dir("training_mix")
    paths = {split: mix_dir / f"{split}.jsonl" for split in ("train", "val", "test")}
    for split, path in paths.items():
        atomic_write_text(path, mixing.jsonl_text(mixing.split_records(result.rows, split)))

    notes = list(build.notes)
    if conversations:
        notes.append(f"{len(conversations)} user conversation(s) from incoming/ (version {folder_version(folder)}) "
                     f"take {settings.incoming_weight:.0%} of the mix.")
    return dg.MaterializeResult(value=pd.DataFrame(result.rows), data_version=dg.DataVersion(result.content_hash()[:16]),
                     metadata=_mix_metadata(build, settings, tokenizer, len(conversations), notes, paths))


def _mix_metadata(build: mixing.MixBuild, settings: mixing.MixSettings, tokenizer, conversations: int,
                  notes: list[str], paths: dict) -> dict[str, dg.MetadataValue]:
    result = build.result
    stats = mixing.token_length_stats(result.rows, tokenizer)
    by_source_split = Counter((r["source"], r["split"]) for r in result.rows)
    source_table = markdown_table(
        ["source", "train", "val", "test", "pool (after decontamination)"],
        [[s, by_source_split[(s, "train")], by_source_split[(s, "val")], by_source_split[(s, "test")], build.pool_size(s)]
         for s in sorted({s for s, _ in by_source_split})],
    )
    token_table = markdown_table(
        ["split", "examples", "tokens", "mean", "p50", "p95", "max"],
        [[k, v["examples"], v["tokens"], f"{v['mean']:.1f}", v["p50"], v["p95"], v["max"]] for k, v in stats.items()],
    )
    ethics_rows = [r for r in result.rows if r["category"] == "ethics"]
    removed_reasons = Counter(f"{item.source} / {why.split(':')[0]} {why.split(':', 1)[1]}" for item, why in build.removed)
    return {
        "requested_size": dg.MetadataValue.int(settings.size),
        "weights": dg.MetadataValue.json(build.weights),
        "incoming_conversations": dg.MetadataValue.int(conversations),
        "limiting_source": dg.MetadataValue.text(result.limiting_source or "none"),
        "max_repeats_used": dg.MetadataValue.int(result.max_repeats_used),
        "ethics_refusal_share": dg.MetadataValue.float(round(
            sum(r["behavior"] == "refuse" for r in ethics_rows) / max(1, len(ethics_rows)), 4)),
        "by_source_and_split": dg.MetadataValue.md(source_table),
        "token_lengths": dg.MetadataValue.md(token_table),
        "tokens_train": dg.MetadataValue.int(stats.get("train", {}).get("tokens", 0)),
        "mean_tokens": dg.MetadataValue.float(stats["all"]["mean"]),
        "removed_by_decontamination": dg.MetadataValue.int(len(build.removed)),
        "removed_reasons": dg.MetadataValue.md(counts_table("reason", dict(removed_reasons) or {"none": 0})),
        "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in notes) or "none"),
        **{f"share_{c}": dg.MetadataValue.float(round(v["share"], 4))
           for c, v in mixing.proportion_report(result.rows, build.weights).items()},
        **numeric_metadata("split", Counter(r["split"] for r in result.rows)),
        **{f"{split}_jsonl": dg.MetadataValue.path(str(path)) for split, path in paths.items()},
    }


DECISION_REMOVED_TABLE = "decision_rows_removed"

DecisionRowsConfig = config_class(
    "DecisionRowsConfig", DecisionRowSettings, exclude=set(),
    doc="What the decision rows draw (kala_lib.decision_data.DecisionRowSettings).",
    descriptions={
        "capability_share": "Share of the mix's train capability prompts added as <|respond|> rows.",
        "corpus_val_share": "Decision-corpus prompts held out for the dial's validation split.",
        "unassigned_split_ratios": "train/val/test hash split of requests the mix did not draw (null = the mix's).",
        "seed": "Seed of the capability sample.",
        "public_sources": "Sources of safety_training_prompts kept as training decision rows (null = all, [] = none), "
                          "e.g. only those validation says help; the sources held out whole for validation always stay.",
    },
)


@dg.asset(
    group_name="data",
    kinds={"python", "duckdb"},
    owners=["team:kala-data"],
    io_manager_key="warehouse_tables",
    code_version="decision_rows.v2",
    description="Decision rows (prompt -> <|respond|> or <|refuse_lawN|>, the loss on that one token): every "
    "generated example's prompt, the decision corpus (typos, long context, role-play, multi-turn, indirect, "
    "alarming-but-benign), a share of the mix's capability prompts and the public safety-training prompts "
    "(config public_sources), decontaminated, split with the mix's request-level split (public prompts: their "
    "source's slice). Train rows are lora_adapter's second stream; val rows calibrate the shipped threshold.",
)
def decision_rows(
    context: dg.AssetExecutionContext, config: DecisionRowsConfig, training_mix: pd.DataFrame,
    constitutional_examples: pd.DataFrame, ethics_eval_suite: pd.DataFrame, benchmark_humaneval: pd.DataFrame,
    benchmark_gsm8k: pd.DataFrame, benchmark_mbpp: pd.DataFrame, safety_training_prompts: pd.DataFrame,
    warehouse: KalaWarehouse,
) -> dg.MaterializeResult[pd.DataFrame]:
    settings = DecisionRowSettings(**config.model_dump())
    mix = training_mix.to_dict("records")
    index = eval_index(benchmark_humaneval, benchmark_gsm8k, benchmark_mbpp, ethics_eval_suite)
    system = mixing.mix_system_prompt(mixing.split_records(mix, "train"))
    public = safety_sources.from_table(safety_training_prompts.to_dict("records"))
    rows, removed = build_decision_rows(mix, constitutional_examples.to_dict("records"), index, system, settings,
                                        public=public)
    if overlaps := overlap_groups(rows):
        raise ValueError(f"{len(overlaps)} requests straddle splits (e.g. {overlaps[:3]}): a decision-row bug, report it")
    context.log.info(f"{len(rows)} decision rows; decontamination removed {len(removed)}")
    warehouse.replace_table(DECISION_REMOVED_TABLE, pd.DataFrame(removed, columns=["key", "source", "reason"]))
    frame = pd.DataFrame([{**r, "messages": json.dumps(r["messages"], ensure_ascii=False)} for r in rows])
    frame["law"] = frame["law"].astype("Int64")
    digest = hashlib.sha256(frame.to_json(orient="records").encode()).hexdigest()
    tallies = decision_counts(rows)
    per_law = Counter((r["split"], r["decision"]) for r in rows)
    table = markdown_table(["decision", "train", "val", "test"],
                           [[d, per_law[("train", d)], per_law[("val", d)], per_law[("test", d)]] for d in DECISION_TOKENS])
    by_label = Counter((r["split"], r["label"], r["source"]) for r in rows)
    label_table = markdown_table(["split", "label", "source", "rows"], [[*k, v] for k, v in sorted(by_label.items())])
    return dg.MaterializeResult(value=frame, data_version=dg.DataVersion(digest[:16]), metadata={
        "rows": dg.MetadataValue.int(len(rows)),
        "by_decision_and_split": dg.MetadataValue.md(table),
        "by_label_and_source": dg.MetadataValue.md(label_table),
        "groups_train": dg.MetadataValue.int(len({r["group"] for r in rows if r["split"] == "train"})),
        "removed_by_decontamination": dg.MetadataValue.int(len(removed)),
        "public_sources": dg.MetadataValue.text("all" if settings.public_sources is None
                                                else ", ".join(settings.public_sources) or "none"),
        "counts": dg.MetadataValue.json(tallies),
        **numeric_metadata("split", Counter(r["split"] for r in rows)),
    })
