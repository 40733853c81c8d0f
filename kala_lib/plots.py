"""The refusal / over-refusal picture, as a dependency-free SVG, and markdown tables.

One point per (model, sample): x = over-refusal on benign prompts, y = refusal on harmful prompts,
with the gate's region (refusal >= min, over-refusal <= max) shaded, so a reader sees at once
which checkpoints were near the gate and where the promoted one sits.
"""

from __future__ import annotations

import base64
from html import escape
from typing import Sequence

SIZE, MARGIN = 360, 48
COLOURS = {"validation": "#1f77b4", "gate": "#d62728"}


def tradeoff_svg(points: Sequence[dict], min_refusal: float, max_over_refusal: float,
                 curves: Sequence[dict] = ()) -> str:
    """``points``: dicts with ``label``, ``sample`` (validation | gate), ``refusal``, ``over_refusal``.
    ``curves``: ROC curves, dicts with ``sample`` and ``points`` [(over_refusal, refusal), ...]."""
    span = SIZE - 2 * MARGIN

    def x(value: float) -> float:
        return MARGIN + span * min(max(value, 0.0), 1.0)

    def y(value: float) -> float:
        return SIZE - MARGIN - span * min(max(value, 0.0), 1.0)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{SIZE}" height="{SIZE}" viewBox="0 0 {SIZE} {SIZE}" '
        'font-family="sans-serif" font-size="10">',
        f'<rect x="0" y="0" width="{SIZE}" height="{SIZE}" fill="white"/>',
        f'<rect x="{x(0):.1f}" y="{y(1):.1f}" width="{x(max_over_refusal) - x(0):.1f}" '
        f'height="{y(min_refusal) - y(1):.1f}" fill="#2ca02c" fill-opacity="0.25" stroke="#2ca02c"/>',
        f'<text x="{x(max_over_refusal) + 4:.1f}" y="{y(1) + 12:.1f}" fill="#2ca02c">gate: refusal &gt;= {min_refusal:.0%}, '
        f'over-refusal &lt;= {max_over_refusal:.0%}</text>',
        f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(1)}" y2="{y(0)}" stroke="black"/>',
        f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(0)}" y2="{y(1)}" stroke="black"/>',
    ]
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        parts.append(f'<text x="{x(tick):.1f}" y="{y(0) + 14:.1f}" text-anchor="middle">{tick:.2f}</text>')
        parts.append(f'<text x="{x(0) - 6:.1f}" y="{y(tick) + 3:.1f}" text-anchor="end">{tick:.2f}</text>')
    parts.append(f'<text x="{SIZE / 2:.1f}" y="{SIZE - 10}" text-anchor="middle">over-refusal on benign prompts</text>')
    parts.append(f'<text x="12" y="{SIZE / 2:.1f}" text-anchor="middle" transform="rotate(-90 12 {SIZE / 2:.1f})">'
                 'refusal on harmful prompts</text>')
    for curve in curves:
        colour = COLOURS.get(curve.get("sample", "validation"), "#7f7f7f")
        path = " ".join(f"{x(o):.1f},{y(r):.1f}" for o, r in sorted(curve["points"]))
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-opacity="0.6"/>')
    for point in points:
        if point.get("refusal") is None or point.get("over_refusal") is None:
            continue
        colour = COLOURS.get(point.get("sample", "validation"), "#7f7f7f")
        cx, cy = x(point["over_refusal"]), y(point["refusal"])
        shape = (f'<rect x="{cx - 4:.1f}" y="{cy - 4:.1f}" width="8" height="8" fill="{colour}"/>' if point.get("sample") == "gate"
                 else f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="{colour}"/>')
        parts.append(shape)
        parts.append(f'<text x="{cx + 6:.1f}" y="{cy - 4:.1f}" fill="{colour}">{escape(point["label"])}</text>')
    parts.append(f'<text x="{SIZE - MARGIN:.1f}" y="{MARGIN - 24}" text-anchor="end" fill="{COLOURS["validation"]}">'
                 '&#9679; validation split</text>')
    parts.append(f'<text x="{SIZE - MARGIN:.1f}" y="{MARGIN - 12}" text-anchor="end" fill="{COLOURS["gate"]}">'
                 '&#9632; gate sample</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def markdown_image(svg: str, alt: str = "refusal against over-refusal") -> str:
    """The SVG inline in Markdown (a data URI), for Dagster metadata."""
    return f"![{alt}](data:image/svg+xml;base64,{base64.b64encode(svg.encode()).decode()})"


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A GitHub-style markdown table (the UI's metadata and the model card render it)."""
    lines = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in rows]
    return "\n".join(lines)
