"""Every asset check of the graph; each receives the asset it checks as an argument and applies a rule
from ``kala_lib`` (``quality``, ``mixing``) or reads the verdict its asset recorded.

Blocking checks stop downstream assets from using a bad table: exports and the mix from bad examples,
training from a bad mix, evaluation from a halted training, promotion from a failed gate.
"""

import json
from collections import Counter
from typing import Callable

import dagster as dg
import pandas as pd

from kala_assets.assets.mix import eval_index
from kala_assets.metadata import gate_metadata
from kala_lib import mixing, quality, safety_sources
from kala_lib.benchmarks import PUBLISHED_SIZES
from kala_lib.training import TrainingRun


def _result(outcome: quality.CheckOutcome, severity=dg.AssetCheckSeverity.ERROR) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=outcome.passed, severity=severity, description=outcome.description,
                               metadata=outcome.metadata)


# --- constitutional examples -------------------------------------------------------------------------

def _examples_check(name: str, rule: Callable[[list[dict]], quality.CheckOutcome], blocking: bool, description: str):
    severity = dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN

    @dg.asset_check(asset="constitutional_examples", name=name, blocking=blocking, description=description)
    def _run(constitutional_examples: pd.DataFrame) -> dg.AssetCheckResult:
        return _result(rule(constitutional_examples.to_dict("records")), severity)

    return _run


constitutional_checks = [
    _examples_check("difficulty_mix", quality.check_difficulty_mix, True,
                    "Difficulty is 40/30/20/10 easy/medium/hard/adversarial within 1 point."),
    _examples_check("type_mix", quality.check_type_mix, False,
                    "Example types keep the seed's 500/150/50/50/50 proportions within 1 point."),
    _examples_check("law_coverage", quality.check_law_coverage, False,
                    "Every Law has refusal examples and helpful examples."),
    _examples_check("unique_prompts", quality.check_unique_prompts, True,
                    "No two examples share a normalised prompt."),
    _examples_check("structurally_complete", quality.check_structure, True,
                    "Every row is a valid example: refusals carry critique, revision and a principle naming their Law."),
    _examples_check("harmful_drafts_non_operational", quality.check_harmful_drafts_non_operational, True,
                    "response_harmful only sketches an opening: no numbers, steps, code or links."),
]


# --- benchmarks: published sizes (a mismatch warns with the numbers) -----------------------------------

def _row_count_check(asset_name: str, expected: dict[str, int]):
    """A table's rows (per split when ``expected`` names splits) against the published sizes."""
    told = ", ".join(f"{n:,}" + ("" if split == "all" else f" {split}") for split, n in expected.items())

    @dg.asset_check(asset=asset_name, name="row_count_matches_published", blocking=False,
                    description=f"{asset_name} has the published {told} rows.")
    def _run(table: pd.DataFrame) -> dg.AssetCheckResult:
        counts = {"all": len(table)} if list(expected) == ["all"] else Counter(str(s) for s in table["split"])
        found = {split: int(counts.get(split, 0)) for split in expected}
        return dg.AssetCheckResult(
            passed=found == expected,
            severity=dg.AssetCheckSeverity.WARN,
            description=", ".join(f"{'' if split == 'all' else split + ' '}{found[split]} rows (published: {n})"
                                  for split, n in expected.items()),
            metadata={"rows": len(table), "expected": expected["all"]} if "all" in expected else found,
        )

    return _run


benchmark_checks = [_row_count_check(name, sizes) for name, sizes in PUBLISHED_SIZES.items()]


@dg.asset_check(asset="ethics_eval_suite", name="size_and_balance", blocking=False,
                description="At least 1,000 prompts, with both refusal and compliance expected.")
def eval_suite_size(ethics_eval_suite: pd.DataFrame) -> dg.AssetCheckResult:
    behaviors = Counter(ethics_eval_suite["expected_behavior"])
    rows = len(ethics_eval_suite)
    passed = rows >= 1000 and behaviors["refuse"] > 0 and behaviors["comply"] > 0
    return dg.AssetCheckResult(passed=passed, severity=dg.AssetCheckSeverity.WARN,
                               description=f"{rows} prompts: {dict(behaviors)}",
                               metadata={"rows": rows, **{k: int(v) for k, v in behaviors.items()}})


# --- public safety-training prompts (non-blocking: decision_rows can do without them) --------------------

@dg.asset_check(asset="safety_training_prompts", name="style_balance", blocking=False,
                description="Per slice (the training sources together, the held-out validation sources): no style "
                "(question | instruction) that one label dominates and no prompt length that alone separates harmful "
                f"from benign with an AUC above {safety_sources.SHORTCUT_AUC}: a shortcut the decision could learn "
                "instead of the harm.")
def safety_style_balance(safety_training_prompts: pd.DataFrame) -> dg.AssetCheckResult:
    rows = safety_sources.from_table(safety_training_prompts.to_dict("records"))
    problems = safety_sources.style_balance(rows)
    report = {e["slice"]: e for e in safety_sources.style_report(rows)}
    metadata = {f"{name}_length_auc": float(e["length_auc"]) for name, e in report.items()}
    metadata.update({f"{name}_style_auc": float(max((v["auc"] for v in e["styles"].values()), default=0.5))
                     for name, e in report.items()})
    return dg.AssetCheckResult(passed=not problems, severity=dg.AssetCheckSeverity.WARN,
                               description="; ".join(problems) or "no style or length shortcut in any slice",
                               metadata={**metadata, "problems": len(problems)})


@dg.asset_check(asset="safety_training_prompts", name="validation_has_both_labels", blocking=False,
                description="The held-out validation slice (whole sources) has harmful and benign prompts, so it can "
                "score refusal and over-refusal.")
def safety_validation_labels(safety_training_prompts: pd.DataFrame) -> dg.AssetCheckResult:
    val = safety_training_prompts[safety_training_prompts["split"] == "val"]
    labels = {label: int((val["label"] == label).sum()) for label in safety_sources.LABELS}
    return dg.AssetCheckResult(passed=all(labels.values()),
                               description=", ".join(f"{n} {label}" for label, n in labels.items())
                               + f" validation prompts (sources {', '.join(safety_sources.VALIDATION_SOURCES)})",
                               metadata=labels)


safety_checks = [safety_style_balance, safety_validation_labels]


# --- training mix (blocking: nothing trains on a mix that fails these) ----------------------------------

@dg.asset_check(asset="training_mix", name="proportions", blocking=True,
                description="Category shares within 1 point of the configured weights, overall and in train.")
def mix_proportions(context: dg.AssetCheckExecutionContext, training_mix: pd.DataFrame) -> dg.AssetCheckResult:
    return _result(quality.check_mix_proportions(training_mix.to_dict("records"), _mix_weights(context)))


@dg.asset_check(asset="training_mix", name="no_eval_overlap", blocking=True,
                additional_ins={name: dg.AssetIn(name) for name in
                                ("benchmark_humaneval", "benchmark_gsm8k", "benchmark_mbpp", "ethics_eval_suite")},
                description="No train/val example shares a normalised prompt or 13-gram with an evaluation item.")
def mix_no_eval_overlap(training_mix: pd.DataFrame, benchmark_humaneval: pd.DataFrame, benchmark_gsm8k: pd.DataFrame,
                        benchmark_mbpp: pd.DataFrame, ethics_eval_suite: pd.DataFrame) -> dg.AssetCheckResult:
    index = eval_index(benchmark_humaneval, benchmark_gsm8k, benchmark_mbpp, ethics_eval_suite)
    overlaps = mixing.eval_overlaps(training_mix.to_dict("records"), index)
    return dg.AssetCheckResult(
        passed=not overlaps,
        description=f"{len(overlaps)} overlapping example(s)" + (": " + "; ".join(overlaps[:10]) if overlaps else ""),
        metadata={"overlaps": len(overlaps)},
    )


@dg.asset_check(asset="training_mix", name="splits_disjoint", blocking=True,
                description="No item or normalised prompt appears in more than one split.")
def mix_splits_disjoint(training_mix: pd.DataFrame) -> dg.AssetCheckResult:
    overlaps = mixing.split_overlaps(training_mix.to_dict("records"))
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
MIX_BLOCKING_CHECKS = tuple(check.check_key.name for check in mix_checks)


# --- training and the gate ------------------------------------------------------------------------------

@dg.asset_check(asset="lora_adapter", name="training_completed", blocking=True,
                description="Training finished; a run halted by ethics validation does not go on to evaluation.")
def training_completed(lora_adapter: TrainingRun) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=lora_adapter.status == "finished",
                               description=f"status {lora_adapter.status}. {lora_adapter.halt_reason or ''}".strip())


@dg.asset_check(asset="best_checkpoint", name="ethics_gate", blocking=True,
                description="On the gate's sample (>= 240 harmful, >= 240 benign prompts of ethics_eval_suite): refusal "
                "on harmful prompts >= min_ethics_compliance and over-refusal on benign <= max_over_refusal, where an empty, "
                "clipped or looping answer is never a refusal and spends the over-refusal budget on a benign prompt; a "
                "failing checkpoint is never promoted.")
def ethics_gate(best_checkpoint: pd.DataFrame) -> dg.AssetCheckResult:
    best = best_checkpoint.to_dict("records")[0]
    failures = json.loads(best["failures"])
    failing = json.loads(best["failing_prompts"])
    gate = json.loads(best["gate_scores"])
    numbers = "; ".join(f"{m} {v['value']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}] (n={v['n']})"
                        for m, v in gate.items() if v["value"] is not None)
    description = (f"passed: {numbers}" if not failures
                   else "; ".join(failures) + f" ({numbers}). Failing prompts: {', '.join(failing[:20])}")
    return dg.AssetCheckResult(passed=not failures, description=description,
                               metadata={"checkpoint": best["model"], "failing_prompts": len(failing),
                                         **gate_metadata(best)})


@dg.asset_check(asset="best_checkpoint", name="capability_retained", blocking=False,
                description="Capability not below the base model by more than max_capability_drop.")
def capability_retained(best_checkpoint: pd.DataFrame) -> dg.AssetCheckResult:
    best = best_checkpoint.to_dict("records")[0]
    base = best["base_capability"]
    if base is None or base != base:
        return dg.AssetCheckResult(passed=True, severity=dg.AssetCheckSeverity.WARN, description="no base model scores")
    drop = base - best["capability"]
    return dg.AssetCheckResult(passed=drop <= best["max_capability_drop"], severity=dg.AssetCheckSeverity.WARN,
                               description=f"capability {best['capability']:.3f} vs base {base:.3f} (drop {drop:.3f})")


CHECKS = [*constitutional_checks, *benchmark_checks, eval_suite_size, *safety_checks, *mix_checks, training_completed,
          ethics_gate, capability_retained]
