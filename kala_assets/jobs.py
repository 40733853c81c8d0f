"""The jobs users and sensors launch, and the part of a run-config file that belongs to each."""

from pathlib import Path

import dagster as dg
import yaml

train_and_evaluate_job = dg.define_asset_job(
    "train_and_evaluate",
    selection=dg.AssetSelection.assets("lora_adapter").downstream(),
    description="Train a LoRA adapter on the current training_mix, evaluate its checkpoints, gate and promote.",
    tags={"kala/kind": "training"},
)

rebuild_training_mix_job = dg.define_asset_job(
    "rebuild_training_mix",
    selection=dg.AssetSelection.assets("training_mix", "decision_rows"),
    description="Rebuild training_mix and its decision rows from the current inputs (run when users' incoming "
                "data changes).",
    tags={"kala/kind": "data"},
)

JOBS = [train_and_evaluate_job, rebuild_training_mix_job]
TRAINING_OPS = ("lora_adapter", "checkpoint_evaluations", "best_checkpoint", "promoted_model")


def job_run_config(path: Path, wanted=TRAINING_OPS) -> dict:
    """The ops of the deployment's run-config file that belong to a job, and its resources (the file
    users edit: configs/cpu_default.yaml and friends)."""
    if not path.exists():
        raise FileNotFoundError(f"run-config file {path} does not exist: set the deployment resource's "
                                f"run_config_file or KALA_RUN_CONFIG to one (e.g. configs/cpu_default.yaml)")
    document = yaml.safe_load(path.read_text()) or {}
    config = {"ops": {k: v for k, v in (document.get("ops") or {}).items() if k in wanted}}
    if document.get("resources"):
        config["resources"] = document["resources"]
    return config
