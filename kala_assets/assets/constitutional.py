"""Constitutional-AI data assets: the generated examples and their training-format exports."""

import hashlib

import dagster as dg
import pandas as pd
from pydantic import Field

from kala_assets.metadata import counts_table, numeric_metadata, preview
from kala_assets.resources import KalaWarehouse
from kala_lib.dataset import ConstitutionalDataset
from kala_lib.ethics_generator import DEFAULT_SEED, DEFAULT_SIZE, EthicsExampleGenerator, GeneratorConfig
from kala_lib.laws import LAWS, LawCategory

EXAMPLES_TABLE = "constitutional_examples"


class ConstitutionalExamplesConfig(dg.Config):
    """How many examples to generate and with which seed (same inputs -> same table)."""

    size: int = Field(default=DEFAULT_SIZE, description="Number of examples; the seed's base set is 800.")
    seed: int = Field(default=DEFAULT_SEED, description="Phrasing and split seed.")
    split_ratios: list[float] = Field(default=list(GeneratorConfig.split_ratios), description="train/val/test shares.")


@dg.asset(
    group_name="data",
    kinds={"python", "duckdb"},
    owners=["team:kala-data"],
    io_manager_key="warehouse_tables",
    code_version="constitutional_examples.v4",
    description="Constitutional-AI examples (critique, revision, principle) for all five Laws, "
    "in the DuckDB table `constitutional_examples`.",
)
def constitutional_examples(
    context: dg.AssetExecutionContext, config: ConstitutionalExamplesConfig
) -> dg.MaterializeResult[pd.DataFrame]:
    generator_config = GeneratorConfig(size=config.size, seed=config.seed, split_ratios=tuple(config.split_ratios))
    dataset = EthicsExampleGenerator(generator_config).generate()
    context.log.info(f"generated {len(dataset)} examples (seed {config.seed})")
    rows = len(dataset)
    stats = dataset.statistics()
    law_counts = {f"Law {k} ({LAWS[LawCategory(k)].name})": v for k, v in stats["by_law"].items()}
    summary = "\n\n".join(
        [
            counts_table("law", law_counts),
            counts_table("type", stats["by_type"]),
            counts_table("difficulty", stats["by_difficulty"]),
            counts_table("split", stats["by_split"]),
        ]
    )
    content_hash = dataset.content_hash()
    return dg.MaterializeResult(
        value=dataset.to_frame(),
        data_version=dg.DataVersion(content_hash[:16]),
        metadata={
            "counts": dg.MetadataValue.md(summary),
            **numeric_metadata("law", stats["by_law"]),
            **numeric_metadata("type", stats["by_type"]),
            **numeric_metadata("difficulty", stats["by_difficulty"]),
            **numeric_metadata("split", stats["by_split"]),
            "refuse_share": dg.MetadataValue.float(stats["by_behavior"]["refuse"] / max(1, rows)),
            "content_sha256": dg.MetadataValue.text(content_hash),
            "preview": preview(
                [e.to_record() for e in dataset.examples[:: max(1, len(dataset) // 8)][:8]],
                ["example_id", "example_type", "law_category", "difficulty", "prompt", "response_ethical"],
            ),
        },
    )


@dg.asset(
    group_name="data",
    kinds={"python", "json"},
    owners=["team:kala-data"],
    code_version="constitutional_exports.v2",
    description="The examples as Alpaca JSON, chat JSONL and prompt/completion JSONL under "
    "`$KALA_DATA_DIR/exports/`, each loadable with `datasets.load_dataset('json', ...)`.",
)
def constitutional_exports(context: dg.AssetExecutionContext, warehouse: KalaWarehouse,
                           constitutional_examples: pd.DataFrame) -> dg.MaterializeResult:
    dataset = ConstitutionalDataset.from_frame(constitutional_examples)
    folder = warehouse.artifact_dir("exports")
    paths = {
        "alpaca": dataset.export_alpaca(folder / "constitutional_alpaca.json"),
        "chat": dataset.export_chat_jsonl(folder / "constitutional_chat.jsonl"),
        "completion": dataset.export_completion_jsonl(folder / "constitutional_completion.jsonl"),
    }
    digest = hashlib.sha256()
    metadata: dict[str, dg.MetadataValue] = {"dagster/row_count": dg.MetadataValue.int(len(dataset))}
    for name, path in paths.items():
        file_hash = hashlib.sha256(path.read_bytes()).hexdigest()
        digest.update(file_hash.encode())
        metadata[f"{name}_path"] = dg.MetadataValue.path(str(path))
        metadata[f"{name}_sha256"] = dg.MetadataValue.text(file_hash)
        context.log.info(f"wrote {name} export to {path}")
    return dg.MaterializeResult(data_version=dg.DataVersion(digest.hexdigest()[:16]), metadata=metadata)
