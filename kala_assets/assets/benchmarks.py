"""Benchmark assets: one DuckDB table per public source, plus the project's security code tasks.

Each loads from ``KALA_BENCHMARK_MIRROR`` when set, else the hub; see ``kala_lib.benchmarks``.
"""

import hashlib
import json

import dagster as dg
import pandas as pd

from kala_assets.metadata import counts_table, preview
from kala_assets.resources import KalaWarehouse
from kala_lib import benchmarks
from kala_lib.security_tasks import security_tasks

#: Columns of each table, so a source that is unavailable still leaves a well-formed empty table.
COLUMNS = {
    "humaneval": ["task_id", "prompt", "canonical_solution", "test", "entry_point"],
    "mbpp": ["task_id", "split", "text", "code", "test_list", "test_setup_code", "challenge_test_list"],
    "gsm8k": ["split", "row_index", "question", "answer", "final_answer"],
    "math": ["split", "row_index", "problem", "solution", "level", "type", "final_answer"],
    "general": ["instruction_id", "instruction", "input", "response", "category", "origin"],
    "advbench": ["behavior_id", "goal", "target"],
    "harmbench": ["behavior_id", "behavior", "functional_category", "semantic_category", "context", "tags"],
    "xstest": ["xstest_id", "prompt", "type", "label", "focus", "note"],
    "jailbreakbench": ["behavior_id", "goal", "category", "label", "origin"],
}

SPECS = [
    # (asset name, loader key, description)
    ("benchmark_humaneval", "humaneval", "HumanEval's 164 problems (evaluation only; never trained on)."),
    ("benchmark_mbpp", "mbpp", "MBPP (974 tasks) with the paper's prompt/test/validation/train split by task id."),
    ("benchmark_gsm8k", "gsm8k", "GSM8K train (7,473) and test (1,319) with parsed final answers."),
    ("benchmark_math", "math", "MATH (hub only: EleutherAI/hendrycks_math); empty when only the mirror is available."),
    ("general_instructions", "general", "General instructions for the 10% share: Dolly-15k from the hub, "
                                        "or the self-instruct seed tasks from the mirror."),
    ("benchmark_advbench", "advbench", "AdvBench's 520 harmful behaviours."),
    ("benchmark_harmbench", "harmbench", "HarmBench standard and contextual behaviours (copyright excluded)."),
    ("benchmark_xstest", "xstest", "XSTest v2: 250 safe and 200 unsafe prompts (over-refusal and refusal)."),
    ("benchmark_jailbreakbench", "jailbreakbench", "JailbreakBench harmful and benign behaviours (hub only)."),
]


def _frame(rows, columns):
    return pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame({c: pd.Series(dtype="string") for c in columns})


def _benchmark_asset(name: str, key: str, description: str):
    @dg.asset(
        name=name,
        group_name="benchmarks",
        kinds={"duckdb"},
        owners=["team:kala-eval"],
        code_version=f"{name}.v1",
        description=description + " Source: the local mirror named by KALA_BENCHMARK_MIRROR, else the hub.",
    )
    def _asset(context: dg.AssetExecutionContext, warehouse: KalaWarehouse) -> dg.MaterializeResult:
        data = benchmarks.LOADERS[key]()
        rows = warehouse.replace_table(name, _frame(data.rows, COLUMNS[key]))
        if not data.available:
            context.log.warning(data.note)
        metadata = {
            "dagster/row_count": dg.MetadataValue.int(rows),
            "source": dg.MetadataValue.text(data.source),
            "revision": dg.MetadataValue.text(data.revision or "n/a"),
            "available": dg.MetadataValue.bool(data.available),
        }
        if data.note:
            metadata["note"] = dg.MetadataValue.text(data.note)
        mirror = benchmarks.mirror_dir()
        published = benchmarks.published_sha256(mirror) if mirror else {}
        for path, sha in data.files.items():
            metadata[f"sha256 {path.rsplit('/', 2)[-2]}/{path.rsplit('/', 1)[-1]}"] = dg.MetadataValue.text(sha)
            relative = str(path).replace(str(mirror) + "/", "") if mirror else path
            if relative in published:
                metadata["matches_published_sha256"] = dg.MetadataValue.bool(
                    metadata.get("matches_published_sha256", dg.MetadataValue.bool(True)).value
                    and published[relative] == sha
                )
        if "split" in COLUMNS[key] and data.rows:
            for split, count in sorted(pd.Series([r["split"] for r in data.rows]).value_counts().items()):
                metadata[f"rows_{split}"] = dg.MetadataValue.int(int(count))
        if data.rows:
            metadata["preview"] = preview(data.rows[:5], COLUMNS[key][:4])
        version = hashlib.sha256((data.revision + json.dumps(len(data.rows))).encode()).hexdigest()[:16]
        return dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(version))

    return _asset


benchmark_assets = [_benchmark_asset(*spec) for spec in SPECS]


@dg.asset(
    group_name="data",
    kinds={"python", "duckdb"},
    owners=["team:kala-data"],
    code_version="security_code_tasks.v1",
    description="KALA's own security-conscious coding tasks: each reference answer uses the safe pattern "
    "(parameterised SQL, no shell, secrets, path checks, no eval, safe_load, ...) and names the insecure "
    "one it avoids. Part of the 30% coding share.",
)
def security_code_tasks(warehouse: KalaWarehouse) -> dg.MaterializeResult:
    records = [task.as_record() for task in security_tasks()]
    rows = warehouse.replace_table("security_code_tasks", pd.DataFrame(records))
    families = pd.Series([r["family"] for r in records]).value_counts()
    digest = hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest()
    return dg.MaterializeResult(
        data_version=dg.DataVersion(digest[:16]),
        metadata={
            "dagster/row_count": dg.MetadataValue.int(rows),
            "families": dg.MetadataValue.md(counts_table("family", {k: int(v) for k, v in families.items()})),
            "preview": preview(records[:5], ["task_id", "family", "cwe", "prompt"]),
        },
    )
