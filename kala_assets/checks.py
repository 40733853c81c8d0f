"""Asset checks guarding the data assets; each one applies a rule from ``kala_lib.quality``.

Blocking checks stop downstream assets (exports, the training mix) from using a bad table.
"""


from typing import Callable

import dagster as dg

from kala_assets.assets.constitutional import EXAMPLES_TABLE, constitutional_examples
from kala_assets.resources import KalaWarehouse
from kala_lib import quality


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
