"""The retrain sensor against a temporary instance: change -> one request; no change, a run in
progress, or a failed blocking check -> none; the cursor advances. And the run-failure recorder."""

import dagster as dg
import duckdb
import pytest
from dagster._core.storage.dagster_run import DagsterRun

from kala_assets.definitions import defs
from kala_assets.resources import KalaWarehouse
from kala_assets.sensors import TRAINING_MIX, record_run_failures, retrain_on_new_data, train_and_evaluate_job


def materialize_mix(instance, version):
    instance.report_runless_asset_event(dg.AssetMaterialization(asset_key=TRAINING_MIX, tags={"dagster/data_version": version}))


def evaluate(instance, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs,
                                      resources={"deployment": defs.resources["deployment"]})
    result = retrain_on_new_data(context)
    requests = [result] if isinstance(result, dg.RunRequest) else []
    return requests, context.cursor, result


@pytest.fixture
def instance():
    with dg.instance_for_test() as test_instance:
        yield test_instance


def test_change_requests_one_run_and_advances_the_cursor(instance):
    requests, cursor, skip = evaluate(instance)
    assert requests == [] and "never been materialized" in skip.skip_message
    materialize_mix(instance, "v1")
    requests, cursor, _ = evaluate(instance)
    assert len(requests) == 1 and cursor == "v1"
    assert requests[0].run_key == "training_mix:v1"
    assert set(requests[0].run_config["ops"]) >= {"lora_adapter", "best_checkpoint"}  # from configs/cpu_default.yaml

    requests, cursor, skip = evaluate(instance, cursor="v1")
    assert requests == [] and "unchanged" in skip.skip_message

    materialize_mix(instance, "v1")  # re-materialized with identical content: same data version
    assert evaluate(instance, cursor="v1")[0] == []
    materialize_mix(instance, "v2")
    requests, cursor, _ = evaluate(instance, cursor="v1")
    assert len(requests) == 1 and cursor == "v2"


def test_no_request_while_a_training_run_is_in_progress(instance):
    materialize_mix(instance, "v1")
    instance.add_run(DagsterRun(job_name=train_and_evaluate_job.name, run_id="running-1",
                                status=dg.DagsterRunStatus.STARTED))
    requests, cursor, skip = evaluate(instance)
    assert requests == [] and "already in progress" in skip.skip_message and cursor is None


def test_no_request_when_a_blocking_check_failed(instance):
    materialize_mix(instance, "v1")
    instance.report_runless_asset_event(dg.AssetCheckEvaluation(
        asset_key=TRAINING_MIX, check_name="no_eval_overlap", passed=False, metadata={}))
    requests, _, skip = evaluate(instance)
    assert requests == [] and "no_eval_overlap failed" in skip.skip_message


def test_run_failure_sensor_records_the_reason(instance, tmp_path):
    @dg.asset
    def broken():
        raise RuntimeError("planted failure")

    result = dg.materialize([broken], instance=instance, raise_on_error=False)
    assert not result.success
    failure_event = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
    warehouse = KalaWarehouse(data_dir=str(tmp_path / "data"))
    context = dg.build_run_status_sensor_context(
        sensor_name=record_run_failures.name, dagster_instance=instance, dagster_run=result.dagster_run,
        dagster_event=failure_event, resources={"warehouse": warehouse},
    ).for_run_failure()
    record_run_failures(context)
    with duckdb.connect(str(warehouse.database_path), read_only=True) as con:
        rows = con.execute("SELECT run_id, failed_steps FROM run_failures").fetchall()
    assert rows == [(result.run_id, '["broken"]')]


def test_the_run_config_comes_from_the_deployment(instance, tmp_path, monkeypatch):
    """A GPU deployment's retrain sensor trains with its GPU settings, not configs/cpu_default.yaml."""
    import yaml

    from kala_assets.definitions_k8s import defs as k8s_defs
    from kala_assets.resources import PROJECT_ROOT, KalaDeployment

    def lora_config(deployment=None, definitions=defs):
        materialize_mix(instance, f"v-{len(instance.get_runs())}-{tmp_path.name}-{deployment}")
        resources = {"deployment": deployment if deployment is not None else definitions.resources["deployment"]}
        context = dg.build_sensor_context(instance=instance, definitions=definitions, resources=resources)
        return retrain_on_new_data(context).run_config["ops"]["lora_adapter"]["config"]

    def from_file(name):
        return yaml.safe_load((PROJECT_ROOT / "configs" / name).read_text())["ops"]["lora_adapter"]["config"]

    monkeypatch.delenv("KALA_RUN_CONFIG", raising=False)
    assert from_file("pythia_6_9b_gpu.yaml") != from_file("cpu_default.yaml")
    assert lora_config() == from_file("cpu_default.yaml")
    assert lora_config(definitions=k8s_defs) == from_file("pythia_6_9b_gpu.yaml")
    assert lora_config(KalaDeployment(run_config_file="configs/pythia_6_9b_gpu.yaml")) == from_file("pythia_6_9b_gpu.yaml")
    monkeypatch.setenv("KALA_RUN_CONFIG", str(PROJECT_ROOT / "configs" / "smoke.yaml"))
    assert lora_config(KalaDeployment()) == from_file("smoke.yaml")
    with pytest.raises(Exception, match="no-such.yaml does not exist.*KALA_RUN_CONFIG"):
        lora_config(KalaDeployment(run_config_file=str(tmp_path / "no-such.yaml")))


def test_the_run_config_carries_the_deployments_base_model(instance, tmp_path, monkeypatch):
    """The model is a resource: the retrain sensor's run config names the deployment file's base model."""
    from kala_assets.definitions_k8s import defs as k8s_defs

    monkeypatch.delenv("KALA_RUN_CONFIG", raising=False)

    def profile(definitions):
        materialize_mix(instance, f"m-{len(instance.get_runs())}-{id(definitions)}")
        context = dg.build_sensor_context(instance=instance, definitions=definitions,
                                          resources={"deployment": definitions.resources["deployment"]})
        return retrain_on_new_data(context).run_config["resources"]["base_model"]["config"]["profile"]

    assert profile(defs) == "smollm2-135m"
    assert profile(k8s_defs) == "pythia-6.9b"
