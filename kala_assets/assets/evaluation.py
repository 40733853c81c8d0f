"""Evaluation and the ethics gate: score every checkpoint, choose one, promote it only if it passes.

The steps receive the training run (``lora_adapter``'s value) and its evaluation as arguments; the
scoring, the gate and the promotion themselves are ``kala_lib.run_evaluation``.
"""

import json

import dagster as dg
import pandas as pd
from pydantic import Field

from kala_assets.config_classes import config_class
from kala_assets.deployment import GPU_POOL, GPU_STEP_TAGS
from kala_assets.metadata import gate_metadata
from kala_assets.resources import KalaWarehouse
from kala_lib import evaluation as ev
from kala_lib import run_evaluation as runs
from kala_lib.plots import markdown_image
from kala_lib.storage import atomic_write_text, replace_partition
from kala_lib.training import TrainingRun

SCORES_TABLE, RESULTS_TABLE = "eval_scores", "eval_results"  # written per run; best_checkpoint is the asset's table

EvaluationConfig = config_class(
    "EvaluationConfig", ev.EvalLimits, exclude=set(),
    doc="Sample sizes per metric (kala_lib.evaluation.EvalLimits; null = the whole set) so the CPU default "
        "finishes in minutes. Every checkpoint is scored on the validation split (selection); only the selected "
        "checkpoint and the base model are scored on the gate's sample and on capability (promotion).",
    descriptions={
        "ethics_limit": "Cap on the gate's sample of ethics_eval_suite (null = all of it: every XSTest safe prompt "
                        "and held-out look-alike, and gate_harmful harmful prompts).",
        "gate_harmful": "Harmful prompts in the gate's sample (stratified by source).",
        "gate_benign": "Benign prompts in the gate's sample, at least.",
        "base_gate_limit": "The base model (a comparison, never the gate) is scored on a stratified part of the gate's "
                           "sample of this size (null = all of it).",
        "validation_limit": "Ethics prompts of the training mix's validation split each checkpoint is scored on "
                            "for selection (null = all).",
        "code_samples": "Completions per coding problem: 1 = greedy pass@1; >= 10 adds pass@10 (sampled at "
                        "code_temperature).",
        "generation_batch_size": "Conversations generated together (larger is faster on a GPU).",
    },
    extra={"include_base": (bool, Field(default=True, description="Also score the base model (cached by content) "
                                                                  "to compare against."))},
)


@dg.asset(
    group_name="evaluation",
    kinds={"pytorch", "duckdb"},
    owners=["team:kala-eval"],
    io_manager_key="warehouse_values",
    pool=GPU_POOL,
    op_tags=GPU_STEP_TAGS,
    code_version="checkpoint_evaluations.v5",
    description="Every saved checkpoint of the training run scored on the training mix's validation split "
    "(ethics and perplexity), the checkpoint chosen there, and that checkpoint and the base model scored on the gate's "
    "sample of ethics_eval_suite (>= 240 harmful, >= 240 benign, Wilson intervals) and on GSM8K, HumanEval and MBPP. "
    "The base model's scores are cached by content. Tables eval_scores (model x metric) and eval_results (per prompt).",
)
def checkpoint_evaluations(context: dg.AssetExecutionContext, config: EvaluationConfig, warehouse: KalaWarehouse,
                           lora_adapter: TrainingRun, ethics_eval_suite: pd.DataFrame, benchmark_gsm8k: pd.DataFrame,
                           benchmark_humaneval: pd.DataFrame, benchmark_mbpp: pd.DataFrame
                           ) -> dg.MaterializeResult[runs.EvaluationRun]:
    from kala_lib.sandbox import UNISOLATED, describe, isolation

    code_sandbox = isolation()  # generated code runs only in the sandbox (or where the user opted out)
    code_isolation = describe()
    (context.log.warning if code_sandbox != "bubblewrap" else context.log.info)(f"generated code: {code_isolation}")
    run = lora_adapter
    limits = ev.EvalLimits(**config.model_dump(exclude={"include_base"}))
    scored = runs.evaluate_run(run, ethics_eval_suite.to_dict("records"), benchmark_gsm8k.to_dict("records"),
                             benchmark_humaneval.to_dict("records"), benchmark_mbpp.to_dict("records"), limits,
                             config.include_base, warehouse.root / "eval_cache", context.log.info)
    evaluation = scored.evaluation
    with warehouse.get_connection() as con:
        replace_partition(con, SCORES_TABLE, pd.DataFrame(evaluation.scores).assign(run_key=run.key), "run_key", run.key)
        replace_partition(con, RESULTS_TABLE, pd.DataFrame(scored.results).assign(run_key=run.key), "run_key", run.key)
    picture = warehouse.artifact_dir("evaluation", run.key) / "tradeoff.svg"
    atomic_write_text(picture, scored.tradeoff_svg)
    evaluation.tradeoff_path = str(picture)
    metadata = {"run_key": dg.MetadataValue.text(run.key), "scores": dg.MetadataValue.md(runs.score_table(evaluation.scores)),
                "tradeoff": dg.MetadataValue.md(markdown_image(scored.tradeoff_svg)),
                "tradeoff_svg": dg.MetadataValue.path(str(picture)),
                "checkpoints": dg.MetadataValue.int(len(run.checkpoints)),
                "selected": dg.MetadataValue.text(evaluation.selected),
                "selection": dg.MetadataValue.text(evaluation.reason),
                "gate_prompts": dg.MetadataValue.int(scored.gate_prompts),
                "validation_prompts": dg.MetadataValue.int(scored.validation_prompts),
                "base_scores_cached": dg.MetadataValue.bool(bool(scored.base_scores_cached)),
                "code_sandbox": dg.MetadataValue.text(code_sandbox),
                "code_isolation": dg.MetadataValue.text(code_isolation)}
    if code_sandbox != "bubblewrap":
        metadata["code_without_isolation"] = dg.MetadataValue.md(f"**Warning:** {UNISOLATED}.")
    for metric, values in evaluation.metrics_by_model()[evaluation.selected].items():
        if metric in runs.HEADLINE and values["value"] is not None:
            metadata[f"selected_{metric}"] = dg.MetadataValue.float(float(values["value"]))
    return dg.MaterializeResult(value=evaluation, metadata=metadata,
                     data_version=dg.DataVersion(f"{run.key}-{evaluation.selected}-{len(evaluation.scores)}"))


GateConfig = config_class("GateConfig", ev.GateThresholds, exclude=set(), doc="The ethics gate's thresholds.",
                          descriptions={"min_ethics_compliance": "Refusal rate on harmful prompts, at least.",
                                        "max_over_refusal": "Refusal rate on benign prompts, at most.",
                                        "max_capability_drop": "Non-blocking: capability below the base model."})


@dg.asset(
    group_name="evaluation",
    kinds={"python", "duckdb"},
    owners=["team:kala-eval"],
    io_manager_key="warehouse_tables",
    code_version="best_checkpoint.v3",
    description="The checkpoint chosen on the training mix's validation split (never on the gate's sample), guarded by "
    "the blocking ethics_gate check on the gate's sample: refusal >= min_ethics_compliance on harmful prompts and "
    "over-refusal <= max_over_refusal on benign (GateConfig).",
)
def best_checkpoint(config: GateConfig, warehouse: KalaWarehouse,
                    checkpoint_evaluations: runs.EvaluationRun) -> dg.MaterializeResult[pd.DataFrame]:
    thresholds = ev.GateThresholds(**config.model_dump())
    record = runs.gate_decision(checkpoint_evaluations, thresholds)
    failures = json.loads(record["failures"])
    report, report_path = _gate_report(warehouse, checkpoint_evaluations, record)
    return dg.MaterializeResult(value=pd.DataFrame([record]), data_version=dg.DataVersion(f"{record['run_key']}-{record['model']}"),
                     metadata={
                         "gate_report": dg.MetadataValue.md(report),
                         "gate_report_path": dg.MetadataValue.path(str(report_path)),
                         "checkpoint": dg.MetadataValue.text(record["model"]),
                         "reason": dg.MetadataValue.text(record["reason"]),
                         "gate_passed": dg.MetadataValue.bool(record["gate_passed"]),
                         "gate_failures": dg.MetadataValue.md("\n".join(f"- {f}" for f in failures) or "none"),
                         "failing_prompts": dg.MetadataValue.int(len(json.loads(record["failing_prompts"]))),
                         **gate_metadata(record),
                     })


def _gate_report(warehouse: KalaWarehouse, evaluation: runs.EvaluationRun, record: dict):
    """The gate report (kala_lib.gate_report) beside the run: markdown on disk with the picture as a
    file, and the same report for the UI with the picture inline; plus gate_decision.json, which the
    main command's verdict reads."""
    from pathlib import Path

    from kala_lib import gate_report

    run = evaluation.run
    with warehouse.get_connection() as con:
        results = con.execute(f'SELECT * FROM "{RESULTS_TABLE}" WHERE run_key = ? AND model = ? AND sample = ?',
                              [run.key, record["model"], "gate"]).df().to_dict("records") \
            if warehouse.has_table(con, RESULTS_TABLE) else []
    by_model = evaluation.metrics_by_model()
    svg = Path(evaluation.tradeoff_path).read_text() if evaluation.tradeoff_path and Path(evaluation.tradeoff_path).is_file() else None
    folder = warehouse.artifact_dir("evaluation", run.key)
    args = (record, by_model[record["model"]], by_model.get("base"), results)
    on_disk = gate_report.build(*args, "![refusal against over-refusal](tradeoff.svg)" if svg else "(no picture)",
                                run.model_profile)
    in_ui = gate_report.build(*args, markdown_image(svg) if svg else "(no picture)", run.model_profile)
    path = folder / gate_report.REPORT_NAME
    atomic_write_text(folder / "gate_decision.json", json.dumps({**record, "model_profile": run.model_profile}, default=str))
    atomic_write_text(path, on_disk)
    return in_ui, path


@dg.asset(
    group_name="evaluation",
    kinds={"pytorch", "safetensors"},
    owners=["team:kala-eval"],
    code_version="promoted_model.v3",
    description="The gated checkpoint: adapter merged into the base weights (safetensors) at "
    "$KALA_DATA_DIR/promoted/merged/, the adapter at promoted/adapter/, and a model card with the evaluation table.",
)
def promoted_model(context: dg.AssetExecutionContext, warehouse: KalaWarehouse, best_checkpoint: pd.DataFrame,
                   checkpoint_evaluations: runs.EvaluationRun) -> dg.MaterializeResult:
    best = best_checkpoint.to_dict("records")[0]
    # the blocking ethics_gate check already stops this; promote() refuses an ungated model regardless
    published = runs.promote(checkpoint_evaluations, best, warehouse.artifact_dir("promoted"))
    context.log.info(f"promoted {best['model']} of run {best['run_key']} to {published['merged'].parent}")
    return dg.MaterializeResult(metadata={
        "merged": dg.MetadataValue.path(str(published["merged"])),
        "adapter": dg.MetadataValue.path(str(published["adapter"])),
        "model_card": dg.MetadataValue.md(published["model_card"]),
        "checkpoint": dg.MetadataValue.text(best["model"]),
    }, data_version=dg.DataVersion(f"{best['run_key']}-{best['model']}"))
