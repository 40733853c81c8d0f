"""The ethics evaluation suite and the training mix built from every data and benchmark asset."""

import hashlib
import json
from collections import Counter
from typing import Optional

import dagster as dg
import pandas as pd
from pydantic import Field

from kala_assets.assets.benchmarks import benchmark_assets, security_code_tasks
from kala_assets.assets.constitutional import EXAMPLES_TABLE, constitutional_examples
from kala_assets.assets.incoming import incoming_data, incoming_folder
from kala_assets.metadata import counts_table, markdown_table, numeric_metadata, preview
from kala_assets.resources import KalaWarehouse
from kala_lib import mixing
from kala_lib.eval_suite import DEFAULT_HELDOUT_SIZE, HELDOUT_SEED, build_eval_suite
from kala_lib.incoming import folder_version, read_incoming
from kala_lib.models import load_tokenizer
from kala_lib.storage import atomic_open

BENCH = {a.key.to_user_string(): a for a in benchmark_assets}
EVAL_SUITE_TABLE = "ethics_eval_suite"
MIX_TABLE = "training_mix"
REMOVED_TABLE = "training_mix_removed"


class EthicsEvalSuiteConfig(dg.Config):
    heldout_size: int = Field(default=DEFAULT_HELDOUT_SIZE, description="Held-out generated items (never trained on).")
    seed: int = Field(default=HELDOUT_SEED, description="Seed of the held-out generation (differs from training's).")


@dg.asset(
    group_name="evaluation",
    kinds={"python", "duckdb"},
    owners=["team:kala-eval"],
    deps=[BENCH["benchmark_advbench"], BENCH["benchmark_harmbench"], BENCH["benchmark_xstest"],
          BENCH["benchmark_jailbreakbench"]],
    code_version="ethics_eval_suite.v2",
    description="1,000+ prompts with the expected behaviour (refuse/comply) and the Law to cite: held-out KALA "
    "items (conflicts, multi-turn, benign look-alikes), AdvBench, HarmBench, XSTest safe and unsafe, JailbreakBench.",
)
def ethics_eval_suite(config: EthicsEvalSuiteConfig, warehouse: KalaWarehouse) -> dg.MaterializeResult:
    rows = build_eval_suite(
        heldout_size=config.heldout_size,
        seed=config.seed,
        advbench=warehouse.read_records("benchmark_advbench"),
        harmbench=warehouse.read_records("benchmark_harmbench"),
        xstest=warehouse.read_records("benchmark_xstest"),
        jailbreakbench=warehouse.read_records("benchmark_jailbreakbench"),
    )
    frame = pd.DataFrame(rows)
    frame["expected_law"] = frame["expected_law"].astype("Int64")
    count = warehouse.replace_table(EVAL_SUITE_TABLE, frame)
    by_source = Counter(r["source"] for r in rows)
    by_behavior = Counter(r["expected_behavior"] for r in rows)
    by_category = Counter(r["category"] for r in rows)
    digest = hashlib.sha256(frame.to_json(orient="records").encode()).hexdigest()
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest[:16]),
        metadata={
            "dagster/row_count": dg.MetadataValue.int(count),
            "by_source": dg.MetadataValue.md(counts_table("source", dict(by_source))),
            "by_category": dg.MetadataValue.md(counts_table("category", dict(by_category))),
            **numeric_metadata("expected", by_behavior),
            "with_expected_law": dg.MetadataValue.int(int(frame["expected_law"].notna().sum())),
            "preview": preview(rows[:: max(1, len(rows) // 8)][:8], ["eval_id", "expected_behavior", "expected_law", "prompt"]),
        },
    )


class TrainingMixConfig(dg.Config):
    """The seed's `dataset:` block: category weights by example count, plus size, seed and splits."""

    size: int = Field(default=10_000, description="Requested examples; shrinks if a source is too small.")
    seed: int = 0
    weights: dict[str, float] = Field(default=dict(mixing.DEFAULT_WEIGHTS), description="ethics/coding/math/general.")
    max_repeats: int = Field(default=3, description="No example appears more often than this.")
    split_ratios: list[float] = Field(default=[0.9, 0.05, 0.05], description="train/val/test.")
    system_prompt: str = Field(default="short", description="'short' or 'full' constitution as the system turn.")
    model_profile: str = Field(default="smollm2-135m", description="Whose tokenizer measures token lengths.")
    ngram: int = Field(default=mixing.NGRAM, description="n-gram length for decontamination.")
    ethics_refusal_share: Optional[float] = Field(default=None, description="Share of refusals within the "
                                                  "ethics category; null = as generated (74% refusals).")
    incoming_weight: float = Field(default=0.1, description="Share of the mix for users' data in "
                                   "$KALA_DATA_DIR/incoming/ when there is any; the other shares scale down.")


def eval_index(warehouse: KalaWarehouse, n: int = mixing.NGRAM) -> mixing.Decontaminator:
    return mixing.build_eval_index(
        humaneval=warehouse.read_records("benchmark_humaneval"),
        gsm8k=warehouse.read_records("benchmark_gsm8k"),
        mbpp=warehouse.read_records("benchmark_mbpp"),
        ethics_suite=warehouse.read_records(EVAL_SUITE_TABLE),
        n=n,
    )


def decontaminated_pools(warehouse: KalaWarehouse, system: str, conversations=(), ngram: int = mixing.NGRAM,
                         math_rows=None, general_rows=None):
    """Every mix source in chat format, minus what overlaps the evaluation data: (pools by
    category, removed (item, reason) pairs). The rows of MATH and general are passed in when the
    caller reads them anyway."""
    math_rows = warehouse.read_records("benchmark_math") if math_rows is None else math_rows
    general_rows = warehouse.read_records("general_instructions") if general_rows is None else general_rows
    candidates = {
        "ethics": mixing.ethics_items(warehouse.read_records(EXAMPLES_TABLE), system),
        "coding": mixing.mbpp_items(warehouse.read_records("benchmark_mbpp"), system)
        + mixing.security_items(warehouse.read_records("security_code_tasks"), system),
        "math": mixing.gsm8k_items(warehouse.read_records("benchmark_gsm8k"), system)
        + mixing.math_items(math_rows, system),
        "general": mixing.general_items(general_rows, system),
        "incoming": mixing.incoming_items(conversations, system),
    }
    index = eval_index(warehouse, ngram)
    pools, removed = {}, []
    for category, items in candidates.items():
        pools[category], dropped = index.filter(items)
        removed += dropped
    return pools, removed


@dg.asset(
    group_name="data",
    kinds={"python", "duckdb"},
    owners=["team:kala-data"],
    # Every input the mix reads, transitively included (the suite's sources too), is a direct
    # parent, so `--select '+training_mix'` builds the mix from an empty warehouse.
    deps=[constitutional_examples, security_code_tasks, ethics_eval_suite, incoming_data, *benchmark_assets],
    code_version="training_mix.v2",
    description="The 40/30/20/10 ethics/coding/math/general training mix in chat format, decontaminated "
    "against every evaluation item, split train/val/test; also JSONL per split under $KALA_DATA_DIR/training_mix/.",
)
def training_mix(
    context: dg.AssetExecutionContext, config: TrainingMixConfig, warehouse: KalaWarehouse
) -> dg.MaterializeResult:
    if config.system_prompt not in mixing.SYSTEM_PROMPTS:
        raise mixing.MixError(f"system_prompt must be one of {sorted(mixing.SYSTEM_PROMPTS)}, got {config.system_prompt!r}")
    mixing.with_incoming(config.weights, config.incoming_weight)  # fail on bad weights before any work
    conversations = read_incoming(incoming_folder(warehouse))  # a malformed file stops here, nothing written
    weights = mixing.with_incoming(config.weights, config.incoming_weight if conversations else 0.0)
    tokenizer = load_tokenizer(config.model_profile)
    math_rows = warehouse.read_records("benchmark_math")
    general_rows = warehouse.read_records("general_instructions")
    pools, removed = decontaminated_pools(warehouse, mixing.SYSTEM_PROMPTS[config.system_prompt], conversations,
                                          config.ngram, math_rows=math_rows, general_rows=general_rows)
    context.log.info(f"decontamination removed {len(removed)} of {len(removed) + sum(map(len, pools.values()))} candidates")

    result = mixing.build_mix(pools, weights, config.size, config.seed, config.max_repeats, config.split_ratios,
                               config.ethics_refusal_share)
    if result.limiting_source:
        context.log.warning(
            f"{result.limiting_source} has too few examples for {config.size} at {config.max_repeats} repeats: "
            f"the mix shrank to {result.size} to keep the proportions"
        )
    frame = pd.DataFrame(result.rows)
    count = warehouse.replace_table(MIX_TABLE, frame)
    removed_frame = pd.DataFrame(
        [{"item_key": item.key, "category": item.category, "reason": why} for item, why in removed],
        columns=["item_key", "category", "reason"],
    )
    warehouse.replace_table(REMOVED_TABLE, removed_frame)

    folder = warehouse.artifact_dir("training_mix")
    paths = {}
    for split in ("train", "val", "test"):
        paths[split] = folder / f"{split}.jsonl"
        with atomic_open(paths[split]) as handle:
            for row in result.rows:
                if row["split"] == split:
                    handle.write(json.dumps({"messages": json.loads(row["messages"]), "category": row["category"],
                                             "source": row["source"], "item_key": row["item_key"],
                                             "behavior": row["behavior"], "rejected": row["rejected"]},
                                            ensure_ascii=False))
                    handle.write("\n")

    stats = mixing.token_length_stats(result.rows, tokenizer)
    by_source_split = Counter((r["source"], r["split"]) for r in result.rows)
    sources = sorted({s for s, _ in by_source_split})
    source_table = markdown_table(
        ["source", "train", "val", "test", "pool (after decontamination)"],
        [[s, by_source_split[(s, "train")], by_source_split[(s, "val")], by_source_split[(s, "test")],
          sum(1 for c in pools.values() for i in c if i.source == s)] for s in sources],
    )
    token_table = markdown_table(
        ["split", "examples", "tokens", "mean", "p50", "p95", "max"],
        [[k, v["examples"], v["tokens"], f"{v['mean']:.1f}", v["p50"], v["p95"], v["max"]] for k, v in stats.items()],
    )
    notes = []
    if not math_rows:
        notes.append("MATH is unavailable (not in the mirror): the math share comes from GSM8K train only.")
    if general_rows and general_rows[0].get("origin") == "self-instruct seed tasks":
        notes.append("Dolly-15k is unavailable (not in the mirror): the general share is the 175 self-instruct "
                     "seed tasks, each used up to max_repeats times.")
    if result.limiting_source:
        notes.append(f"Limiting source: {result.limiting_source} (requested {config.size}, built {result.size}).")
    if conversations:
        notes.append(f"{len(conversations)} user conversation(s) from incoming/ (version "
                     f"{folder_version(incoming_folder(warehouse))}) take {config.incoming_weight:.0%} of the mix.")
    shares = mixing.proportion_report(result.rows, weights)
    ethics_rows = [r for r in result.rows if r["category"] == "ethics"]
    metadata = {
        "dagster/row_count": dg.MetadataValue.int(count),
        "requested_size": dg.MetadataValue.int(config.size),
        "weights": dg.MetadataValue.json(weights),
        "incoming_conversations": dg.MetadataValue.int(len(conversations)),
        "limiting_source": dg.MetadataValue.text(result.limiting_source or "none"),
        "max_repeats_used": dg.MetadataValue.int(result.max_repeats_used),
        "ethics_refusal_share": dg.MetadataValue.float(round(
            sum(r["behavior"] == "refuse" for r in ethics_rows) / max(1, len(ethics_rows)), 4)),
        "by_source_and_split": dg.MetadataValue.md(source_table),
        "token_lengths": dg.MetadataValue.md(token_table),
        "tokens_train": dg.MetadataValue.int(stats.get("train", {}).get("tokens", 0)),
        "mean_tokens": dg.MetadataValue.float(stats["all"]["mean"]),
        "removed_by_decontamination": dg.MetadataValue.int(len(removed)),
        "removed_reasons": dg.MetadataValue.md(counts_table("reason", dict(Counter(
            f"{item.source} / {why.split(':')[0]} {why.split(':', 1)[1]}" for item, why in removed)) or {"none": 0})),
        "notes": dg.MetadataValue.md("\n".join(f"- {n}" for n in notes) or "none"),
        **{f"share_{c}": dg.MetadataValue.float(round(v["share"], 4)) for c, v in shares.items()},
        **numeric_metadata("split", Counter(r["split"] for r in result.rows)),
        **{f"{split}_jsonl": dg.MetadataValue.path(str(path)) for split, path in paths.items()},
    }
    return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(result.content_hash()[:16]))
