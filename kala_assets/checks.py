"""Asset checks guarding the data assets; each one applies a rule from ``kala_lib.quality``.

Blocking checks stop downstream assets (exports, the training mix) from using a bad table.
"""


from collections import Counter
from typing import Callable

import dagster as dg

from kala_assets.assets.constitutional import EXAMPLES_TABLE, constitutional_examples
from kala_assets.resources import KalaWarehouse
from kala_lib import mixing, quality
from kala_lib.benchmarks import PUBLISHED_SIZES


def _check(name: str, rule: Callable[[list[dict]], quality.CheckOutcome], blocking: bool, description: str):
    severity = dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN

    @dg.asset_check(asset=constitutional_examples, name=name, blocking=blocking, description=description)
    def _run(warehouse: KalaWarehouse) -> dg.AssetCheckResult:
        outcome = rule(warehouse.read_records(EXAMPLES_TABLE))
        return dg.AssetCheckResult(
            passed=outcome.passed, severity=severity, description=outcome.description, metadata=outcome.metadata
        )

    return _run


constitutional_checks = [
    _check("difficulty_mix", quality.check_difficulty_mix, True,
           "Difficulty is 40/30/20/10 easy/medium/hard/adversarial within 1 point."),
    _check("type_mix", quality.check_type_mix, False,
           "Example types keep the seed's 500/150/50/50/50 proportions within 1 point."),
    _check("law_coverage", quality.check_law_coverage, False,
           "Every Law has refusal examples and helpful examples."),
    _check("unique_prompts", quality.check_unique_prompts, True,
           "No two examples share a normalised prompt."),
    _check("structurally_complete", quality.check_structure, True,
           "Every row is a valid example: refusals carry critique, revision and a principle naming their Law."),
    _check("harmful_drafts_non_operational", quality.check_harmful_drafts_non_operational, True,
           "response_harmful only sketches an opening: no numbers, steps, code or links."),
]


# --- benchmarks: published sizes (a mismatch warns with the numbers) -------------------------------

def _row_count_check(asset_name: str, expected: dict[str, int]):
    """A table's rows (per split when ``expected`` names splits) against the published sizes."""
    told = ", ".join(f"{n:,}" + ("" if split == "all" else f" {split}") for split, n in expected.items())

    @dg.asset_check(asset=asset_name, name="row_count_matches_published", blocking=False,
                    description=f"{asset_name} has the published {told} rows.")
    def _run(warehouse: KalaWarehouse) -> dg.AssetCheckResult:
        rows = warehouse.read_records(asset_name)
        counts = {"all": len(rows)} if list(expected) == ["all"] else Counter(str(r.get("split")) for r in rows)
        found = {split: int(counts.get(split, 0)) for split in expected}
        return dg.AssetCheckResult(
            passed=found == expected,
            severity=dg.AssetCheckSeverity.WARN,
            description=", ".join(f"{'' if split == 'all' else split + ' '}{found[split]} rows (published: {n})"
                                  for split, n in expected.items()),
            metadata={"rows": len(rows), "expected": expected["all"]} if "all" in expected else found,
        )

    return _run


benchmark_checks = [_row_count_check(name, sizes) for name, sizes in PUBLISHED_SIZES.items()]


@dg.asset_check(asset="ethics_eval_suite", name="size_and_balance", blocking=False,
                description="At least 1,000 prompts, with both refusal and compliance expected.")
def eval_suite_size(warehouse: KalaWarehouse) -> dg.AssetCheckResult:
    rows = warehouse.read_records("ethics_eval_suite")
    behaviors = Counter(r["expected_behavior"] for r in rows)
    passed = len(rows) >= 1000 and behaviors["refuse"] > 0 and behaviors["comply"] > 0
    return dg.AssetCheckResult(passed=passed, severity=dg.AssetCheckSeverity.WARN,
                               description=f"{len(rows)} prompts: {dict(behaviors)}",
                               metadata={"rows": len(rows), **{k: int(v) for k, v in behaviors.items()}})


# --- training mix (blocking: nothing trains on a mix that fails these) ------------------------------

@dg.asset_check(asset="training_mix", name="proportions", blocking=True,
                description="Category shares within 1 point of the configured weights, overall and in train.")
def mix_proportions(context: dg.AssetCheckExecutionContext, warehouse: KalaWarehouse) -> dg.AssetCheckResult:
    rows = warehouse.read_records("training_mix")
    weights = _mix_weights(context)
    outcome = quality.check_mix_proportions(rows, weights)
    return dg.AssetCheckResult(passed=outcome.passed, description=outcome.description, metadata=outcome.metadata)


@dg.asset_check(asset="training_mix", name="no_eval_overlap", blocking=True,
                description="No train/val example shares a normalised prompt or 13-gram with an evaluation item.")
def mix_no_eval_overlap(warehouse: KalaWarehouse) -> dg.AssetCheckResult:
    from kala_assets.assets.mix import eval_index

    overlaps = mixing.eval_overlaps(warehouse.read_records("training_mix"), eval_index(warehouse))
    return dg.AssetCheckResult(
        passed=not overlaps,
        description=f"{len(overlaps)} overlapping example(s)" + (": " + "; ".join(overlaps[:10]) if overlaps else ""),
        metadata={"overlaps": len(overlaps)},
    )


@dg.asset_check(asset="training_mix", name="splits_disjoint", blocking=True,
                description="No item or normalised prompt appears in more than one split.")
def mix_splits_disjoint(warehouse: KalaWarehouse) -> dg.AssetCheckResult:
    overlaps = mixing.split_overlaps(warehouse.read_records("training_mix"))
    return dg.AssetCheckResult(
        passed=not overlaps,
        description=f"{len(overlaps)} shared between splits" + (": " + "; ".join(overlaps[:10]) if overlaps else ""),
        metadata={"shared": len(overlaps)},
    )


def _mix_weights(context) -> dict:
    """The weights the latest training_mix was built with (recorded in its metadata)."""
    event = context.instance.get_latest_materialization_event(dg.AssetKey("training_mix"))
    if event is not None and event.asset_materialization is not None:
        recorded = event.asset_materialization.metadata.get("weights")
        if recorded is not None:
            return dict(recorded.value)
    return dict(mixing.DEFAULT_WEIGHTS)


mix_checks = [mix_proportions, mix_no_eval_overlap, mix_splits_disjoint]
