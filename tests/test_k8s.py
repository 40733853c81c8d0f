"""The Kubernetes flavour: definitions load, and the pods the k8s_job_executor would create for a
training step and for a data step carry the expected resources, node placement and data volume."""

from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest
import yaml
from dagster._config import process_config
from dagster_k8s import k8s_job_executor
from dagster_k8s.container_context import K8sContainerContext
from dagster_k8s.job import UserDefinedDagsterK8sConfig, construct_dagster_k8s_job, get_user_defined_k8s_config

from kala_assets.definitions_k8s import STEP_POD_DEFAULTS, defs

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "k8s"
# The instance-level fields the Helm chart's K8sRunLauncher passes to every step job (a real
# K8sRunLauncher loads a kubeconfig on construction, which this machine does not have).
HELM_RUN_LAUNCHER = SimpleNamespace(job_image=None, dagster_home="/opt/dagster/dagster_home",
                                    instance_config_map="kala-dagster-instance", postgres_password_secret="dagster-postgresql-secret")


def step_pod(asset_name: str):
    """The step's pod spec, composed the way K8sStepHandler composes it (executor config, then the
    step's dagster-k8s/config tags)."""
    config = process_config(k8s_job_executor.config_schema.config_type, STEP_POD_DEFAULTS)
    assert config.success, config.errors
    executor = K8sContainerContext(
        env_vars=STEP_POD_DEFAULTS["env_vars"], volume_mounts=STEP_POD_DEFAULTS["volume_mounts"],
        volumes=STEP_POD_DEFAULTS["volumes"],
        run_k8s_config=UserDefinedDagsterK8sConfig.from_dict(STEP_POD_DEFAULTS["step_k8s_config"]),
    )
    tags = defs.resolve_assets_def(asset_name).op.tags
    context = executor.merge(K8sContainerContext(run_k8s_config=get_user_defined_k8s_config(tags)))
    job = construct_dagster_k8s_job(
        context.get_k8s_job_config(job_image="registry.example.com/kala:latest", run_launcher=HELM_RUN_LAUNCHER),
        args=["dagster", "api", "execute_step"], job_name=f"dagster-step-{asset_name.replace('_', '-')}",
        component="step_worker", user_defined_k8s_config=context.run_k8s_config,
    )
    return job.spec.template.spec


def test_definitions_load_with_a_pod_per_step():
    assert defs.executor.name == "k8s"
    assert {j.name for j in defs.jobs} >= {"train_and_evaluate", "rebuild_training_mix"}
    assert defs.resolve_assets_def("lora_adapter").op.pool == "gpu"


@pytest.mark.parametrize("asset_name", ["lora_adapter", "checkpoint_evaluations"])
def test_training_and_evaluation_steps_get_a_gpu_pod(asset_name):
    pod = step_pod(asset_name)
    container = pod.containers[0]
    assert container.resources.limits["nvidia.com/gpu"] == "1" and container.resources.requests["nvidia.com/gpu"] == "1"
    assert container.resources.limits["memory"] == "96Gi"
    assert pod.node_selector == {"nvidia.com/gpu.present": "true"}
    assert any(t.key == "nvidia.com/gpu" for t in pod.tolerations)
    assert {"name": "KALA_DATA_DIR", "value": "/data"} in [{"name": e.name, "value": e.value} for e in container.env]
    assert any(m.name == "kala-data" and m.mount_path == "/data" for m in container.volume_mounts)
    assert [v.persistent_volume_claim.claim_name for v in pod.volumes if v.name == "kala-data"] == ["kala-data"]


def test_data_steps_get_the_small_default_pod():
    container = step_pod("training_mix").containers[0]
    assert "nvidia.com/gpu" not in (container.resources.limits or {})
    assert container.resources.limits == {"cpu": "2", "memory": "8Gi"}
    assert any(m.mount_path == "/data" for m in container.volume_mounts)


def test_helm_values_use_the_k8s_run_launcher_and_these_definitions():
    values = yaml.safe_load((DEPLOY / "values.yaml").read_text())
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    deployment = values["dagster-user-deployments"]["deployments"][0]
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", "kala_assets.definitions_k8s"]
    assert values["concurrency"]["pools"]["defaultLimit"] == 1
    assert values["dagsterDaemon"]["runMonitoring"]["enabled"] and values["dagsterDaemon"]["runRetries"]["maxRetries"] == 1
    pvc = yaml.safe_load((DEPLOY / "kala-data-pvc.yaml").read_text())
    assert pvc["metadata"]["name"] == "kala-data" and pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_in_process_definitions_ignore_the_pod_tags():
    from kala_assets.definitions import defs as local_defs

    assert local_defs.executor.name == "in_process"
    assert local_defs.resolve_assets_def("lora_adapter").op.tags["kala/resources"] == "gpu"
    assert isinstance(local_defs.resolve_assets_def("lora_adapter"), dg.AssetsDefinition)
