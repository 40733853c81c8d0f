"""Small helpers that turn domain statistics into Dagster metadata the UI renders and plots."""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import dagster as dg

from kala_lib.plots import markdown_table


def counts_table(title: str, counts: Mapping[Any, int]) -> str:
    total = sum(counts.values()) or 1
    return markdown_table([title, "count", "share"], [(k, v, f"{v / total:.1%}") for k, v in counts.items()])


def numeric_metadata(prefix: str, counts: Mapping[Any, int]) -> dict[str, dg.MetadataValue]:
    """One number per key, so the UI can plot each across materializations."""
    return {f"{prefix}_{key}": dg.MetadataValue.int(int(value)) for key, value in counts.items()}


def preview(records: Sequence[Mapping[str, Any]], columns: Sequence[str], width: int = 80) -> dg.MetadataValue:
    def cell(value: Any) -> str:
        text = str(value)
        return text if len(text) <= width else text[: width - 1] + "…"

    return dg.MetadataValue.md(markdown_table(columns, [[cell(r.get(c)) for c in columns] for r in records]))


def gate_metadata(best: Mapping[str, Any]) -> dict[str, dg.MetadataValue]:
    """The gate's numbers of a best_checkpoint row as plottable metadata: each rate with its Wilson
    interval and n, and the thresholds."""
    out = {"min_ethics_compliance": dg.MetadataValue.float(float(best["min_ethics_compliance"])),
           "max_over_refusal": dg.MetadataValue.float(float(best["max_over_refusal"]))}
    for metric, values in json.loads(best["gate_scores"]).items():
        out[metric] = dg.MetadataValue.float(float(values["value"] or 0.0))
        for part in ("ci_low", "ci_high"):
            if values.get(part) is not None:
                out[f"{metric}_{part}"] = dg.MetadataValue.float(float(values[part]))
        out[f"{metric}_n"] = dg.MetadataValue.int(int(values["n"] or 0))
    return out
