"""The one ``Definitions`` object: assets, checks and resources of the KALA asset graph.

Steps run in one process (``in_process_executor``): the data steps take seconds, so process
start-up would dominate, and a single process never contends for the DuckDB file lock.
``kala_assets.definitions_k8s`` is the same graph with a pod per step on Kubernetes.
"""

import dagster as dg

from kala_assets.assets import benchmarks, constitutional, evaluation, incoming, mix, training
from kala_assets.checks import benchmark_checks, constitutional_checks, eval_suite_size, mix_checks
from kala_assets.resources import KalaDeployment, KalaWarehouse
from kala_assets.sensors import (
    rebuild_training_mix_job,
    record_run_failures,
    retrain_on_new_data,
    train_and_evaluate_job,
    watch_incoming_data,
)

ASSETS = dg.load_assets_from_modules([constitutional, incoming, benchmarks, mix, training, evaluation])
CHECKS = [*constitutional_checks, *benchmark_checks, eval_suite_size, *mix_checks, training.training_completed,
          evaluation.ethics_gate, evaluation.capability_retained]
RESOURCES = {"warehouse": KalaWarehouse(), "deployment": KalaDeployment(),
             "pipes_subprocess_client": dg.PipesSubprocessClient()}
JOBS = [train_and_evaluate_job, rebuild_training_mix_job]
SENSORS = [retrain_on_new_data, watch_incoming_data, record_run_failures]

defs = dg.Definitions(assets=ASSETS, asset_checks=CHECKS, resources=RESOURCES, jobs=JOBS, sensors=SENSORS,
                      executor=dg.in_process_executor)
