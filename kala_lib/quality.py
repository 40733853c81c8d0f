"""Data-quality rules for Constitutional-AI examples, as plain functions over table rows.

They take the raw records stored in the warehouse (not validated objects), so a damaged or
hand-edited table is reported row by row instead of crashing on the first bad row. Dagster
asset checks call these; tests call them directly on deliberately bad data.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from kala_lib.dataset import DIFFICULTY_WEIGHTS, Behavior, ConstitutionalExample, normalize_prompt
from kala_lib.ethics_generator import BASE_PLAN
from kala_lib.laws import LawCategory

Record = Mapping[str, Any]


@dataclass
class CheckOutcome:
    passed: bool
    description: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _shares(values: Iterable[str], expected: Mapping[str, float], tolerance: float, what: str) -> CheckOutcome:
    counts = Counter(values)
    total = sum(counts.values())
    if total == 0:
        return CheckOutcome(False, f"no rows: cannot check the {what} mix")
    # Whole numbers cannot hit a share closer than 1/total; never demand more than that.
    allowed = max(tolerance, 1.0 / total)
    rows, bad = {}, []
    for key, weight in expected.items():
        share = counts.get(key, 0) / total
        rows[key] = {"count": counts.get(key, 0), "share": round(share, 4), "expected": round(weight, 4)}
        if abs(share - weight) > allowed + 1e-12:
            bad.append(f"{key} {share:.1%} (expected {weight:.1%})")
    unknown = sorted(set(counts) - set(expected))
    if unknown:
        bad.append(f"unknown values {unknown}")
    metadata = {f"{k}_share": v["share"] for k, v in rows.items()} | {"tolerance": allowed, "rows": total}
    if bad:
        return CheckOutcome(False, f"{what} mix off by more than {allowed:.1%}: " + "; ".join(bad), metadata)
    return CheckOutcome(True, f"{what} mix within {allowed:.1%} of target", metadata)


def check_difficulty_mix(records: list[Record], tolerance: float = 0.01) -> CheckOutcome:
    """40/30/20/10 easy/medium/hard/adversarial within ``tolerance`` (1 point)."""
    expected = {d.value: w for d, w in DIFFICULTY_WEIGHTS.items()}
    return _shares((str(r.get("difficulty")) for r in records), expected, tolerance, "difficulty")


def expected_type_shares() -> dict[str, float]:
    counts: Counter = Counter()
    for kind, _, n in BASE_PLAN:
        counts[kind.value] += n
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()}


def check_type_mix(records: list[Record], tolerance: float = 0.01) -> CheckOutcome:
    """Example types in the seed's proportions (500/150/50/50/50 of the base set)."""
    return _shares((str(r.get("example_type")) for r in records), expected_type_shares(), tolerance, "example type")


def check_law_coverage(records: list[Record], min_refusals: int = 1, min_helpful: int = 1) -> CheckOutcome:
    """Every Law has refusals to learn from and helpful answers, so no Law teaches only 'no'."""
    refuse: Counter = Counter()
    comply: Counter = Counter()
    for r in records:
        try:
            law = int(LawCategory.parse(r.get("law_category")))
        except ValueError:
            continue
        (refuse if r.get("expected_behavior") == Behavior.REFUSE.value else comply)[law] += 1
    metadata = {f"law_{i}_refuse": refuse[i] for i in range(5)} | {f"law_{i}_comply": comply[i] for i in range(5)}
    missing = [
        f"Law {i}: {refuse[i]} refusals, {comply[i]} helpful"
        for i in range(5)
        if refuse[i] < min_refusals or comply[i] < min_helpful
    ]
    if missing:
        return CheckOutcome(False, "Laws without enough coverage: " + "; ".join(missing), metadata)
    return CheckOutcome(True, "every Law has refusal and helpful examples", metadata)


def check_unique_prompts(records: list[Record]) -> CheckOutcome:
    """No two examples share a prompt after normalisation (case, punctuation, spacing)."""
    seen: dict[str, str] = {}
    duplicates = []
    for r in records:
        key = normalize_prompt(str(r.get("prompt") or ""))
        if key in seen:
            duplicates.append(f"{r.get('example_id')} repeats {seen[key]}")
        else:
            seen[key] = str(r.get("example_id"))
    if duplicates:
        return CheckOutcome(
            False,
            f"{len(duplicates)} duplicate prompt(s): " + "; ".join(duplicates[:10]),
            {"duplicates": len(duplicates)},
        )
    return CheckOutcome(True, "all prompts unique", {"duplicates": 0})


def check_structure(records: list[Record]) -> CheckOutcome:
    """Each row is a valid example: refusals carry response_harmful, critique and a principle
    citing their Law; conflicts name a winner by the decision order; dialogues are well formed."""
    errors = []
    for r in records:
        try:
            ConstitutionalExample.from_record(dict(r))
        except (ValueError, KeyError, TypeError) as exc:
            errors.append(str(exc) if not isinstance(exc, KeyError) else f"{r.get('example_id')}: missing {exc}")
    if errors:
        return CheckOutcome(
            False, f"{len(errors)} malformed example(s): " + "; ".join(errors[:10]), {"malformed": len(errors)}
        )
    return CheckOutcome(True, "every example is structurally complete", {"malformed": 0})


# --- non-operational responses ------------------------------------------------------------------

_OPERATIONAL_PATTERNS = {
    "quantity": re.compile(r"\d+(\.\d+)?\s*(mg|g|kg|ml|l|grams?|litres?|liters?|ounces?|oz|%|percent|ppm|°c|degrees)\b", re.I),
    "any_number": re.compile(r"\d"),
    "numbered_step": re.compile(r"(^|\n)\s*(step\s+\w+[:.]|\d+[.)]\s)", re.I),
    "code": re.compile(r"```|\bimport\s+\w+|\bdef\s+\w+\(|\bexec\(|\beval\(|#include|\bsudo\b|\$\s*\w+|<script", re.I),
    "url": re.compile(r"https?://|www\.", re.I),
}


def operational_findings(text: str) -> list[str]:
    """Names of the patterns that make a harmful draft look operational (empty = generic)."""
    return [name for name, pattern in _OPERATIONAL_PATTERNS.items() if pattern.search(text or "")]


def check_harmful_drafts_non_operational(records: list[Record]) -> CheckOutcome:
    """``response_harmful`` only sketches a compliant opening: no numbers, steps, code or links."""
    flagged = []
    for r in records:
        findings = operational_findings(str(r.get("response_harmful") or ""))
        if findings:
            flagged.append(f"{r.get('example_id')} ({', '.join(findings)})")
    if flagged:
        return CheckOutcome(
            False,
            f"{len(flagged)} harmful draft(s) look operational: " + "; ".join(flagged[:10]),
            {"flagged": len(flagged)},
        )
    return CheckOutcome(True, "no harmful draft contains operational detail", {"flagged": 0})


def check_mix_proportions(records: list[Record], weights: Mapping[str, float], tolerance: float = 0.01) -> CheckOutcome:
    """Category shares match the mix weights within 1 point over the whole mix, and in the train
    split within 1 point or one item's copies (splits are cut per item, so a split can be off by
    the copies of one item; that only matters for tiny mixes)."""
    from kala_lib.mixing import normalise_weights

    expected = {k: v for k, v in normalise_weights(weights).items()}
    overall = _shares((str(r.get("category")) for r in records), expected, tolerance, "category")
    train_rows = [r for r in records if r.get("split") == "train"]
    copies = max(Counter(str(r.get("item_key")) for r in train_rows).values(), default=1)
    train = _shares((str(r.get("category")) for r in train_rows), expected,
                    max(tolerance, copies / max(1, len(train_rows))), "train-split category")
    metadata = {**overall.metadata, **{f"train_{k}": v for k, v in train.metadata.items()}}
    if not overall.passed or not train.passed:
        failed = [o.description for o in (overall, train) if not o.passed]
        return CheckOutcome(False, "; ".join(failed), metadata)
    return CheckOutcome(True, f"{overall.description}; {train.description}", metadata)


__all__ = [
    "check_mix_proportions",
    "CheckOutcome",
    "check_difficulty_mix",
    "check_harmful_drafts_non_operational",
    "check_law_coverage",
    "check_structure",
    "check_type_mix",
    "check_unique_prompts",
    "operational_findings",
]
