"""Automation: retrain when the training data really changed; record every failed run.

`retrain_on_new_data` watches the data version of `training_mix` (derived from its content, so a
re-materialization with identical content keeps the version) and requests one
`train_and_evaluate` run per new version, which trains, evaluates, gates and promotes. It does
nothing while such a run is queued or in progress, or when a blocking check of `training_mix`
failed on its latest materialization. Its cursor is the last data version it acted on.
"""

import json

import dagster as dg
import pandas as pd

from kala_assets.assets.incoming import describe_incoming
from kala_assets.checks import MIX_BLOCKING_CHECKS
from kala_assets.jobs import job_run_config, rebuild_training_mix_job, train_and_evaluate_job
from kala_assets.resources import KalaDeployment, KalaWarehouse
from kala_lib.incoming import IncomingDataError, folder_version
from kala_lib.storage import replace_partition

TRAINING_MIX = dg.AssetKey("training_mix")
IN_FLIGHT = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
             dg.DagsterRunStatus.STARTED]


def _latest_data_version(instance, key: dg.AssetKey) -> str | None:
    event = instance.get_latest_materialization_event(key)
    if event is None or event.asset_materialization is None:
        return None
    return event.asset_materialization.tags.get("dagster/data_version")


def _blocking_check_failed(instance, key: dg.AssetKey) -> str | None:
    for name in MIX_BLOCKING_CHECKS:
        record = instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [dg.AssetCheckKey(key, name)]).get(dg.AssetCheckKey(key, name))
        if record is not None and record.event is not None and record.event.dagster_event is not None:
            evaluation = record.event.dagster_event.event_specific_data
            if getattr(evaluation, "passed", True) is False:
                return name
    return None


@dg.sensor(job=train_and_evaluate_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.STOPPED,
           description="Retrain when the content (data version) of training_mix changes.")
def retrain_on_new_data(context: dg.SensorEvaluationContext, deployment: KalaDeployment):
    version = _latest_data_version(context.instance, TRAINING_MIX)
    if version is None:
        return dg.SkipReason("training_mix has never been materialized")
    if version == context.cursor:
        return dg.SkipReason(f"training_mix is unchanged (data version {version})")
    failed = _blocking_check_failed(context.instance, TRAINING_MIX)
    if failed:
        return dg.SkipReason(f"blocking check {failed} failed on training_mix; not training on it")
    running = context.instance.get_runs(dg.RunsFilter(job_name=train_and_evaluate_job.name, statuses=IN_FLIGHT), limit=1)
    if running:
        return dg.SkipReason(f"a {train_and_evaluate_job.name} run is already in progress ({running[0].run_id})")
    context.update_cursor(version)
    return dg.RunRequest(run_key=f"training_mix:{version}", run_config=job_run_config(deployment.run_config_path),
                         tags={"kala/training_mix_version": version})


@dg.sensor(job=rebuild_training_mix_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.STOPPED,
           description="Observe $KALA_DATA_DIR/incoming/ and rebuild training_mix when its content hash changes.")
def watch_incoming_data(context: dg.SensorEvaluationContext, warehouse: KalaWarehouse, deployment: KalaDeployment):
    folder = warehouse.incoming_dir
    version = folder_version(folder) or "empty"
    if version == (context.cursor or "empty"):
        return dg.SkipReason(f"incoming data unchanged (version {version}) in {folder}")
    try:
        _, metadata = describe_incoming(warehouse, version)  # a file changed meanwhile: next tick sees it
    except IncomingDataError as exc:
        # The cursor stays: the mix is not rebuilt until the file is fixed, and nothing is lost.
        context.log.error(f"incoming data rejected: {exc}")
        return dg.SkipReason(f"incoming data rejected, training_mix left as it is: {exc}")
    observation = dg.AssetObservation(asset_key="incoming_data", metadata=metadata,
                                      tags={"dagster/data_version": version})
    context.update_cursor(version)
    return dg.SensorResult(
        asset_events=[observation],
        run_requests=[dg.RunRequest(run_key=f"incoming:{version}",
                                    run_config=job_run_config(deployment.run_config_path, wanted=("training_mix",)),
                                    tags={"kala/incoming_version": version})],
    )


RUN_FAILURES_TABLE = "run_failures"


@dg.run_failure_sensor(monitor_all_code_locations=False, default_status=dg.DefaultSensorStatus.RUNNING,
                       description="Record every failed run with its reason in the DuckDB table run_failures.")
def record_run_failures(context: dg.RunFailureSensorContext, warehouse: KalaWarehouse):
    run = context.dagster_run
    message = context.failure_event.message or ""
    steps = [e.step_key for e in context.get_step_failure_events()]
    row = pd.DataFrame([{"run_id": run.run_id, "job_name": run.job_name, "failed_steps": json.dumps(steps),
                         "reason": message[:2000], "recorded_at": pd.Timestamp.now(tz="UTC").isoformat()}])
    with warehouse.get_connection() as connection:
        replace_partition(connection, RUN_FAILURES_TABLE, row, "run_id", run.run_id)
    context.log.error(f"run {run.run_id} of {run.job_name} failed at {steps}: {message[:300]}")


SENSORS = [retrain_on_new_data, watch_incoming_data, record_run_failures]
