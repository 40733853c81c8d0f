"""The KALA graph for Kubernetes: the same assets, checks, jobs and sensors, each step in its own pod.

Load it with ``dagster ... -m kala_assets.definitions_k8s`` in the user-code deployment of the
Dagster Helm chart (``deploy/k8s/values.yaml``: K8sRunLauncher, daemon with run monitoring and
retries). Training and evaluation steps ask for a GPU through their ``dagster-k8s/config`` tags
(``kala_assets.deployment``); the data steps get the executor's small default pod. Every pod mounts
the shared data volume at KALA_DATA_DIR, so the DuckDB warehouse and the artifacts are shared.
For MotherDuck or an object store see docs/operations.md ("Past one machine").
"""

import dagster as dg
from dagster_k8s import k8s_job_executor

from kala_assets.definitions import ASSETS, CHECKS, JOBS, RESOURCES, SENSORS
from kala_assets.deployment import DATA_MOUNT, DATA_VOLUME
from kala_assets.resources import KalaDeployment

STEP_POD_DEFAULTS = {
    "max_concurrent": 4,
    "env_vars": [f"KALA_DATA_DIR={DATA_MOUNT}"],
    "volume_mounts": [{"name": DATA_VOLUME, "mount_path": DATA_MOUNT}],
    "volumes": [{"name": DATA_VOLUME, "persistent_volume_claim": {"claim_name": DATA_VOLUME}}],
    "step_k8s_config": {"container_config": {"resources": {"requests": {"cpu": "1", "memory": "4Gi"},
                                                           "limits": {"cpu": "2", "memory": "8Gi"}}}},
}

# the sensors of a GPU deployment start runs with the GPU settings, not the CPU default's
GPU_RESOURCES = {**RESOURCES, "deployment": KalaDeployment(run_config_file="configs/pythia_6_9b_gpu.yaml")}

defs = dg.Definitions(assets=ASSETS, asset_checks=CHECKS, resources=GPU_RESOURCES, jobs=JOBS, sensors=SENSORS,
                      executor=k8s_job_executor.configured(STEP_POD_DEFAULTS))
