"""Small helpers that turn domain statistics into Dagster metadata the UI renders and plots."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import dagster as dg


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in rows]
    return "\n".join(lines)


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
