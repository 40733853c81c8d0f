"""Public safety-training prompts (StrongREJECT, Do-Not-Answer, CoCoNot, ...) for the refuse/respond
decision: loaded, filtered, decontaminated and split by whole source in ``kala_lib.safety_sources``."""

import hashlib
from collections import Counter

import dagster as dg
import pandas as pd

from kala_assets.assets.mix import eval_index
from kala_assets.metadata import counts_table, numeric_metadata, preview
from kala_assets.resources import KalaWarehouse
from kala_lib import safety_sources
from kala_lib.plots import markdown_table

SAFETY_REMOVED_TABLE = "safety_training_prompts_removed"


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(safety_sources.COLUMNS))
    frame["law"] = frame["law"].astype("Int64")
    return frame


@dg.asset(
    group_name="benchmarks",
    kinds={"python", "duckdb"},
    owners=["team:kala-data"],
    io_manager_key="warehouse_tables",
    code_version="safety_training_prompts.v1",
    description="Public safety-training prompts for the refuse/respond decision, one row per prompt with its label "
    "(harmful | benign), the Law a refusal cites, the source's category, style (question | instruction), licence "
    "and split: StrongREJECT, Do-Not-Answer, HarmfulQA, CatQA, CoCoNot (unsafe and contrast), CyberSecEval FRR, "
    "self-instruct, OpenAssistant and Dolly's safety-topic instructions. Only clearly harmful or clearly benign "
    "rows; decontaminated against every evaluation set (the mix's index); whole sources held out for "
    "validation. Source: safety_training/ of KALA_BENCHMARK_MIRROR, else the pinned GitHub files. Removed rows "
    "and reasons in safety_training_prompts_removed.",
)
def safety_training_prompts(
    context: dg.AssetExecutionContext, warehouse: KalaWarehouse, ethics_eval_suite: pd.DataFrame,
    benchmark_humaneval: pd.DataFrame, benchmark_gsm8k: pd.DataFrame, benchmark_mbpp: pd.DataFrame,
) -> dg.MaterializeResult[pd.DataFrame]:
    data = safety_sources.load_safety_sources()
    if not data.available:
        context.log.warning(data.note)
    index = eval_index(benchmark_humaneval, benchmark_gsm8k, benchmark_mbpp, ethics_eval_suite)
    rows, removed = safety_sources.build_safety_prompts(data, index)
    decontaminated = [r for r in removed if r["stage"] == "decontamination"]
    context.log.info(f"{len(rows)} safety-training prompts; decontamination removed {len(decontaminated)}, "
                     f"filters and duplicates {len(removed) - len(decontaminated)}")
    warehouse.replace_table(SAFETY_REMOVED_TABLE, pd.DataFrame(removed, columns=list(safety_sources.REMOVED_COLUMNS)))
    frame = _frame(rows)
    digest = hashlib.sha256(frame.to_json(orient="records").encode()).hexdigest()
    return dg.MaterializeResult(value=frame, data_version=dg.DataVersion(digest[:16]),
                                metadata=_metadata(data, rows, removed))


def _metadata(data: safety_sources.SafetyData, rows: list[dict], removed: list[dict]) -> dict[str, dg.MetadataValue]:
    per = Counter((r["source"], r["label"], r["split"]) for r in rows)
    cut = Counter((r["source"], r["stage"]) for r in removed)
    cells = [(label, split) for label in safety_sources.LABELS for split in ("train", "val")]
    stages = ("filter", "duplicate", "decontamination")
    table = markdown_table(
        ["source", "licence", *(f"{label} {split}" for label, split in cells), *(f"removed: {s}" for s in stages)],
        [[source, safety_sources.LICENCES[source], *(per[(source, *cell)] for cell in cells),
          *(cut[(source, stage)] for stage in stages)] for source in safety_sources.SOURCES],
    )
    reasons = Counter(f"{r['source']} / {r['stage']}: {r['reason'].split(':')[0] if r['stage'] == 'decontamination' else r['reason'][:70]}"
                      for r in removed)
    licences = Counter(r["licence"] for r in rows)
    problems = safety_sources.style_balance(rows)
    metadata = {
        "source": dg.MetadataValue.text(data.source),
        "available": dg.MetadataValue.bool(data.available),
        "rows": dg.MetadataValue.int(len(rows)),
        "by_source_label_split": dg.MetadataValue.md(table),
        "licences": dg.MetadataValue.md(counts_table("licence", dict(licences.most_common()) or {"none": 0})),
        "removed_by_decontamination": dg.MetadataValue.int(sum(r["stage"] == "decontamination" for r in removed)),
        "removed_by_filters": dg.MetadataValue.int(sum(r["stage"] == "filter" for r in removed)),
        "removed_duplicates": dg.MetadataValue.int(sum(r["stage"] == "duplicate" for r in removed)),
        "removed_reasons": dg.MetadataValue.md(counts_table("source / stage: reason", dict(reasons.most_common(40))
                                                            or {"none": 0})),
        "validation_sources": dg.MetadataValue.text(", ".join(safety_sources.VALIDATION_SOURCES)),
        "style_balance": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "no problems"),
        **numeric_metadata("label", Counter(f"{r['split']}_{r['label']}" for r in rows)),
    }
    if data.note:
        metadata["note"] = dg.MetadataValue.text(data.note)
    for path, sha in data.files.items():
        metadata[f"sha256 {path}"] = dg.MetadataValue.text(sha)
    if data.files:
        metadata["matches_pinned_sha256"] = dg.MetadataValue.bool(
            all(safety_sources.PINNED_SHA256.get(p) == sha for p, sha in data.files.items()))
    if rows:
        metadata["preview"] = preview(rows[:: max(1, len(rows) // 8)][:8], ["key", "label", "law", "style", "text"])
    return metadata
