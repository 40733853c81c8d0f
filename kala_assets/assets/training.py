"""LoRA training as an asset: the trainer runs in a subprocess through Dagster Pipes."""

import hashlib
import json
import os
import re
import sys
from pathlib import Path

import dagster as dg
import pandas as pd
from dagster._core.errors import DagsterPipesExecutionError  # not re-exported at the top level
from pydantic import Field

from kala_assets.config_classes import config_class
from kala_assets.deployment import GPU_POOL, GPU_STEP_TAGS
from kala_assets.metadata import markdown_table
from kala_assets.resources import KalaBaseModel, KalaWarehouse
from kala_lib import evaluation, mixing
from kala_lib.decision_data import decision_records, from_table
from kala_lib.models import check_model_available
from kala_lib.storage import atomic_write_text, replace_partition, staged_dir
from kala_lib.training import TrainConfig, TrainingRun, ethics_prompt_set

METRICS_TABLE = "training_metrics"
DECISIONS_TRAIN, DECISIONS_VAL = "decisions_train.jsonl", "decisions_val.jsonl"


def has_decision_tokens(records: list[dict]) -> bool:
    """Whether the mix's assistant targets start with decision tokens (training_mix decision_tokens)."""
    from kala_lib.decision import DECISION_TOKENS

    targets = [r["messages"][-1]["content"] for r in records if r["category"] != "incoming"]
    return bool(targets) and all(t.startswith(DECISION_TOKENS) for t in targets)
ETHICS_TABLE = "training_ethics_validation"
CODE_VERSION = "lora_adapter.v7"  # v7: refusal input rows tuned; v6: bf16 mixed precision where the CPU has it; v5: fitted decision rows, untied head


#: TrainConfig's fields the asset sets itself (paths, the ethics prompts, the base_model resource's
#: profile) or leaves at the trainer's value.
SET_BY_ASSET = {"output_dir", "train_file", "val_file", "ethics_prompts", "model_profile", "decision_tokens",
                "decision_file", "decision_val_file"}
TRAINER_INTERNAL = {"bucket_size", "ethics_max_new_tokens", "log_every", "max_grad_norm", "min_shared_prefix",
                    "quantization", "resume", "threads", "val_examples", "wandb_mode", "wandb_project",
                    "weight_decay"}
ASSET_ONLY = {"ethics_harmful_prompts", "ethics_benign_prompts", "nproc_per_node"}

LoraTrainingConfig = config_class(
    "LoraTrainingConfig", TrainConfig, exclude=SET_BY_ASSET | TRAINER_INTERNAL,
    doc="The trainer's settings (kala_lib.training.TrainConfig, whose defaults are the seed's "
        "configs/lora_training_config.yaml values), plus what the asset needs to set it up. The base model is "
        "the base_model resource's profile; the system prompt is the training mix's.",
    descriptions={
        "max_steps": "Stop after this many optimizer steps.",
        "max_train_examples": "Train on a seeded sample of the mix.",
        "share_prefix": "Run the prefix all examples of a step share (system prompt, chat header) once per step; "
                        "same gradients, about a third fewer tokens.",
        "first_token_weight": "Loss weight of the first response tokens, where the refuse-or-help decision is made "
                              "(1.0 = plain SFT).",
        "first_tokens": "How many first response tokens first_token_weight applies to.",
        "preference_weight": "Weight of the DPO preference term (the CAI preference stage) beside SFT; 0 = plain SFT.",
        "preference_tokens": "Both responses of a preference pair are cut to this many first tokens.",
        "target_modules": "LoRA target modules (null = the profile's; e.g. add gate_proj, up_proj, down_proj "
                          "for the MLP).",
        "decision_weight": "Weight of the decision rows' mean loss beside the SFT loss per token.",
        "decision_batch_size": "Decision rows per micro-batch (they are short: one target each).",
        "decision_share": "Decision rows' share of a step's rows (the SGD decision stream; 0.75: three prompt -> "
                          "decision-token rows per SFT row); 0 = SFT only (the default: decision_fit does better).",
        "decision_fit_rows": "Training decision rows the fit reads, stratified by source (null = all).",
        "decision_fit_equal_cells": "Sample the same count from every (source, label) cell instead of each its share "
                                    "(with 3,000 rows: validation AUC 0.873 against 0.809, the gate's sample no better, "
                                    "1.8x the fit's time: docs/ethics.md).",
        "mixed_precision": "auto (bfloat16 autocast for a float32 model on a CPU with native bfloat16, e.g. "
                           "avx512_bf16: 1.3x the tokens/s; float32 elsewhere), bf16 (always) or no (float32). "
                           "The LoRA weights, gradients and optimizer state stay float32.",
        "decision_follow_steps": "With decision_fit, first tune each kept checkpoint's five refusal input rows "
                                 "(everything else frozen) for this many batches of training refusals "
                                 "(kala_lib.decision_follow); 0 = off, the default: the shipped generation config "
                                 "already makes the text after a refusal token its Law's refusal sentence.",
        "decision_follow_learning_rate": "Adam learning rate of the refusal input rows' tuning.",
        "decision_follow_tokens": "First tokens of each training refusal (after its token) the tuning's loss reads.",
        "decision_follow_batch_size": "Training refusals per tuning step (round-robin over the Laws).",
        "decision_fit_val_limit": "Validation prompts per label the fit chooses its regulariser on (the same sample "
                                  "evaluation scores).",
    },
    extra={
        "decision_init": (str, Field(default="split", description="Where the decision tokens' new rows start: split "
                                     "(the head untied: output rows as 'Sure'/'I', input rows as the header's line "
                                     "break, so the text after the token starts a sentence; needed by decision_fit), "
                                     "words (respond as 'Sure', each refusal as 'I', tied) or mean (of all rows).")),
        "decision_fit": (bool, Field(default=True, description="After training, fit each kept checkpoint's decision "
                                     "rows by regularised logistic regression on its own final states (training rows "
                                     "only; the regulariser chosen on validation); saved as checkpoints/step-N/fitted/.")),
        "ethics_harmful_prompts": (int, Field(default=8, description="Harmful validation prompts scored during "
                                              "training (from the mix's validation split).")),
        "ethics_benign_prompts": (int, Field(default=8, description="Benign validation prompts scored during "
                                             "training.")),
        "nproc_per_node": (int, Field(default=1, description=">1 launches torchrun (DDP: NCCL on GPUs, gloo on CPU).")),
    },
)


@dg.asset(
    group_name="training",
    kinds={"pytorch", "python"},
    owners=["team:kala-training"],
    io_manager_key="warehouse_values",
    pool=GPU_POOL,
    op_tags=GPU_STEP_TAGS,
    code_version=CODE_VERSION,
    description="A LoRA adapter trained on training_mix (PEFT directory at $KALA_DATA_DIR/adapters/latest/), "
    "with checkpoints, TensorBoard logs, per-step metrics in DuckDB and ethics validation during training. "
    "Its value is the training run (folder, checkpoints, model profile, system prompt) evaluation receives.",
)
def lora_adapter(
    context: dg.AssetExecutionContext,
    config: LoraTrainingConfig,
    warehouse: KalaWarehouse,
    base_model: KalaBaseModel,
    pipes_subprocess_client: dg.PipesSubprocessClient,
    training_mix: pd.DataFrame,
    decision_rows: pd.DataFrame,
) -> dg.MaterializeResult[TrainingRun]:
    rows = training_mix.to_dict("records")
    train, val = mixing.split_records(rows, "train"), mixing.split_records(rows, "val")
    if not train:
        raise ValueError("training_mix has no train split: materialize training_mix (with size > 0) first")
    system_prompt = mixing.mix_system_prompt(train + val)
    train_text, val_text = mixing.jsonl_text(train), mixing.jsonl_text(val)
    decisions = from_table(decision_rows.to_dict("records"))
    decisions_train = mixing.jsonl_text(decision_records(decisions, "train"))
    decisions_val = mixing.jsonl_text(decision_records(decisions, "val"))
    with_tokens = has_decision_tokens(train)
    if config.decision_share and not with_tokens:
        raise ValueError("decision_share > 0 but training_mix's targets have no decision tokens: set training_mix "
                         "decision_tokens: true (the default), or lora_adapter decision_share: 0")
    check_model_available(base_model.profile)  # unknown profile or missing weights: fail before any work
    # the fit needs decision tokens in the targets and validation rows to choose on; without them it is off
    fit = bool(config.decision_fit and with_tokens and decisions_val)
    settings = {**config.model_dump(exclude=ASSET_ONLY), "model_profile": base_model.profile,
                "decision_tokens": with_tokens, "decision_fit": fit}
    # Ethics validation during training reads the mix's validation split, never the evaluation suite.
    prompts = ethics_prompt_set(evaluation.validation_rows(val),
                                config.ethics_harmful_prompts, config.ethics_benign_prompts, seed=config.seed)
    # Same training data + same settings + same code -> same run folder, so a re-run resumes.
    uses_rows = bool(config.decision_share or fit)
    data_hash = hashlib.sha256((train_text + (decisions_train if uses_rows else "")
                                + (decisions_val if fit else "")).encode()).hexdigest()
    key = hashlib.sha256(json.dumps([data_hash, settings, prompts, CODE_VERSION],
                                    sort_keys=True).encode()).hexdigest()[:16]
    output_dir = warehouse.root / "training" / key
    train_config = TrainConfig(output_dir=str(output_dir), train_file=str(output_dir / "train.jsonl"),
                               val_file=str(output_dir / "val.jsonl") if val_text else None,
                               decision_file=str(output_dir / DECISIONS_TRAIN) if uses_rows else None,
                               decision_val_file=str(output_dir / DECISIONS_VAL) if fit else None,
                               ethics_prompts=prompts, **settings).validate(data_files=False)  # bad: nothing written
    run_dir = warehouse.artifact_dir("training", key)
    atomic_write_text(run_dir / "train.jsonl", train_text)  # the run's own copy: a rebuilt mix cannot change it
    if val_text:
        atomic_write_text(run_dir / "val.jsonl", val_text)
    if uses_rows:
        atomic_write_text(run_dir / DECISIONS_TRAIN, decisions_train)
    if decisions_val:  # the dial's validation prompts: evaluation calibrates the threshold on them
        atomic_write_text(run_dir / DECISIONS_VAL, decisions_val)
    config_path = run_dir / "train_config.json"
    atomic_write_text(config_path, json.dumps(train_config.__dict__, indent=1, default=str))

    launcher = [sys.executable, "-m", "kala_assets.training_entry"]
    if config.nproc_per_node > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={config.nproc_per_node}", "-m", "kala_assets.training_entry"]
    context.log.info(f"training in {run_dir} ({' '.join(launcher[1:])})")
    try:
        pipes_subprocess_client.run(
            command=launcher,
            context=context,
            extras={"config_path": str(config_path), "system_prompt": system_prompt},
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    except DagsterPipesExecutionError as exc:
        raise TrainingInterrupted(_interrupted_message(str(exc), run_dir)) from exc
    result = json.loads((run_dir / "result.json").read_text())
    _record_metrics(warehouse, run_dir, key, context.run_id)
    latest = _publish_adapter(warehouse, Path(result["adapter_dir"]), key)
    checkpoints = sorted((c.name for c in (run_dir / "checkpoints").glob("step-*")), key=lambda n: int(n.split("-")[1]))
    run = TrainingRun(key=key, folder=str(run_dir), adapter=str(warehouse.root / "adapters" / key),
                      train_file=train_config.train_file, val_file=train_config.val_file, checkpoints=checkpoints,
                      model_profile=base_model.profile, system_prompt=system_prompt, status=result["status"],
                      halt_reason=result["halt_reason"], decision_tokens=with_tokens,
                      decision_val_file=str(run_dir / DECISIONS_VAL) if decisions_val else None)
    if result["halt_reason"]:
        context.log.warning(f"training halted: {result['halt_reason']}")
    return dg.MaterializeResult(value=run, metadata=_training_metadata(result, latest, run_dir), data_version=dg.DataVersion(key))


def _training_metadata(result: dict, latest: Path, run_dir: Path) -> dict[str, dg.MetadataValue]:
    history = result["ethics_history"]
    first, last = (history[0], history[-1]) if history else ({}, {})
    ethics_rows = [[h["step"], _fmt(h.get("compliance")), _fmt(h.get("over_refusal"))] for h in history]
    metadata = {
        "status": dg.MetadataValue.text(result["status"]),
        "steps": dg.MetadataValue.int(result["steps"]),
        "final_loss": dg.MetadataValue.float(float(result["final_loss"] or float("nan"))),
        "tokens_per_second": dg.MetadataValue.float(float(result["tokens_per_second"] or 0.0)),
        "mixed_precision": dg.MetadataValue.text(str(result.get("mixed_precision", "no"))),
        "trainable_share": dg.MetadataValue.float(result["trainable_parameters"] / result["total_parameters"]),
        "trainable_parameters": dg.MetadataValue.int(result["trainable_parameters"]),
        "ethics_history": dg.MetadataValue.md(markdown_table(["step", "refusal on harmful", "over-refusal on benign"], ethics_rows)),
        "refusal_rate_start": dg.MetadataValue.float(float(first.get("compliance") or 0.0)),
        "refusal_rate_end": dg.MetadataValue.float(float(last.get("compliance") or 0.0)),
        "over_refusal_start": dg.MetadataValue.float(float(first.get("over_refusal") or 0.0)),
        "over_refusal_end": dg.MetadataValue.float(float(last.get("over_refusal") or 0.0)),
        "adapter": dg.MetadataValue.path(str(latest)),
        "run_dir": dg.MetadataValue.path(str(run_dir)),
        "tensorboard": dg.MetadataValue.path(str(run_dir / "tensorboard")),
        "checkpoints": dg.MetadataValue.json(result["checkpoints"]),
        "best_checkpoint": dg.MetadataValue.text(result["best_checkpoint"] or "none"),
        "resumed_from_step": dg.MetadataValue.int(result["resumed_from"] or 0),
    }
    fits = run_dir / "decision_fit.jsonl"
    if fits.is_file():  # decision_fit: each checkpoint's fitted rows, chosen on validation
        rows = [json.loads(line) for line in fits.read_text().splitlines() if line.strip()]
        metadata["decision_fit"] = dg.MetadataValue.md(markdown_table(
            ["step", "validation AUC", "refusal at 5% over-refusal", "at 10%", "L2", "Law scale", "seconds"],
            [[r["step"], _fmt(r["val_auc"]), _fmt(r["val_refusal_at_5"]), _fmt(r["val_refusal_at_10"]), r["l2"],
              r["law_scale"], round(r["seconds"])] for r in rows]))
        metadata["decision_fit_val_auc"] = dg.MetadataValue.float(float(rows[-1]["val_auc"]))
    if result["halt_reason"]:
        metadata["halt_reason"] = dg.MetadataValue.text(result["halt_reason"])
    return metadata


class TrainingInterrupted(RuntimeError):
    """The training subprocess died (killed, out of memory, an error); its checkpoints are kept."""


def _interrupted_message(pipes_error: str, run_dir: Path) -> str:
    code = re.search(r"code (-?\d+)", pipes_error)
    how = f"exit code {code.group(1)}" if code else pipes_error.strip()
    if code and int(code.group(1)) < 0:
        how += f" (killed by signal {-int(code.group(1))}{', SIGKILL: out of memory or killed by hand' if code.group(1) == '-9' else ''})"
    checkpoints = sorted((run_dir / "checkpoints").glob("step-*"))
    resume = (f"the next materialization with the same data and settings resumes from {checkpoints[-1].name}"
              if checkpoints else "no checkpoint was written yet, so the next materialization starts over")
    return (f"the training subprocess ended with {how}; the run folder {run_dir} is kept and {resume}. "
            "Its own error, if any, is in the step's log above.")


def _fmt(value):
    return "n/a" if value is None else f"{value:.2f}"


def _record_metrics(warehouse: KalaWarehouse, run_dir: Path, key: str, dagster_run_id: str) -> None:
    """Per-step metrics and ethics validations into DuckDB (this run's rows replaced, others kept)."""
    def load(name):
        path = run_dir / name
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []

    metrics = pd.DataFrame(load("metrics.jsonl"))
    ethics = pd.DataFrame([{k: v for k, v in r.items() if k != "samples"} for r in load("ethics.jsonl")])
    with warehouse.get_connection() as con:
        for table, frame in ((METRICS_TABLE, metrics), (ETHICS_TABLE, ethics)):
            if not frame.empty:
                replace_partition(con, table, frame.assign(run_key=key, dagster_run_id=dagster_run_id), "run_key", key)


def _publish_adapter(warehouse: KalaWarehouse, adapter: Path, key: str) -> Path:
    """adapters/<key> holds the adapter; adapters/latest points at it (swapped atomically)."""
    import shutil

    root = warehouse.artifact_dir("adapters")
    with staged_dir(root / key) as staging:
        shutil.copytree(adapter, staging, dirs_exist_ok=True)
    link = root / ".latest.tmp"
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(key, target_is_directory=True)
    os.replace(link, root / "latest")
    return root / "latest"
