"""Benchmark assets, generated from ``kala_lib.benchmarks.BENCHMARKS`` (one table per public source),
plus the project's security code tasks.

Each loads from ``KALA_BENCHMARK_MIRROR`` when set, else the hub; see ``kala_lib.benchmarks``.
"""

import hashlib
import json
from collections import Counter

import dagster as dg
import pandas as pd

from kala_assets.metadata import counts_table, preview
from kala_lib import benchmarks
from kala_lib.benchmarks import BenchmarkSpec
from kala_lib.security_tasks import security_tasks


def _frame(rows, columns) -> pd.DataFrame:
    """The rows, or a well-formed empty table when a source is unavailable."""
    return pd.DataFrame(rows, columns=list(columns)) if rows else pd.DataFrame({c: pd.Series(dtype="string") for c in columns})


def _source_metadata(data: benchmarks.BenchmarkData) -> dict[str, dg.MetadataValue]:
    """Where the rows came from, each file's sha256, and whether it matches the mirror's published one."""
    metadata = {"source": dg.MetadataValue.text(data.source), "revision": dg.MetadataValue.text(data.revision or "n/a"),
                "available": dg.MetadataValue.bool(data.available)}
    if data.note:
        metadata["note"] = dg.MetadataValue.text(data.note)
    mirror = benchmarks.mirror_dir()
    published = benchmarks.published_sha256(mirror) if mirror else {}
    matches = []
    for path, sha in data.files.items():
        metadata[f"sha256 {path.rsplit('/', 2)[-2]}/{path.rsplit('/', 1)[-1]}"] = dg.MetadataValue.text(sha)
        relative = str(path).replace(str(mirror) + "/", "") if mirror else path
        if relative in published:
            matches.append(published[relative] == sha)
    if matches:
        metadata["matches_published_sha256"] = dg.MetadataValue.bool(all(matches))
    return metadata


def _benchmark_asset(spec: BenchmarkSpec):
    @dg.asset(
        name=spec.table,
        group_name="benchmarks",
        kinds={"duckdb"},
        owners=["team:kala-eval"],
        io_manager_key="warehouse_tables",
        code_version=f"{spec.table}.v1",
        description=spec.description + " Source: the local mirror named by KALA_BENCHMARK_MIRROR, else the hub.",
    )
    def _asset(context: dg.AssetExecutionContext) -> dg.MaterializeResult[pd.DataFrame]:
        data = spec.loader()
        if not data.available:
            context.log.warning(data.note)
        metadata = _source_metadata(data)
        if spec.hub:
            metadata["hub_dataset"] = dg.MetadataValue.text(f"{spec.hub[0]} ({spec.hub[1] or 'default'}, {spec.hub[2]})")
        if "split" in spec.columns and data.rows:
            for split, count in sorted(Counter(r["split"] for r in data.rows).items()):
                metadata[f"rows_{split}"] = dg.MetadataValue.int(count)
        if data.rows:
            metadata["preview"] = preview(data.rows[:5], spec.columns[:4])
        version = hashlib.sha256((data.revision + json.dumps(len(data.rows))).encode()).hexdigest()[:16]
        return dg.MaterializeResult(value=_frame(data.rows, spec.columns), metadata=metadata, data_version=dg.DataVersion(version))

    return _asset


benchmark_assets = [_benchmark_asset(spec) for spec in benchmarks.BENCHMARKS]


@dg.asset(
    group_name="data",
    kinds={"python", "duckdb"},
    owners=["team:kala-data"],
    io_manager_key="warehouse_tables",
    code_version="security_code_tasks.v1",
    description="KALA's own security-conscious coding tasks: each reference answer uses the safe pattern "
    "(parameterised SQL, no shell, secrets, path checks, no eval, safe_load, ...) and names the insecure "
    "one it avoids. Part of the 30% coding share.",
)
def security_code_tasks() -> dg.MaterializeResult[pd.DataFrame]:
    records = [task.as_record() for task in security_tasks()]
    families = Counter(r["family"] for r in records)
    digest = hashlib.sha256(json.dumps(records, sort_keys=True).encode()).hexdigest()
    return dg.MaterializeResult(value=pd.DataFrame(records), data_version=dg.DataVersion(digest[:16]), metadata={
        "families": dg.MetadataValue.md(counts_table("family", dict(families.most_common()))),
        "preview": preview(records[:5], ["task_id", "family", "cwe", "prompt"]),
    })
