"""What each kind of step needs to run, as tags and pools, so the same assets scale past one machine.

- ``GPU_POOL``: training and evaluation; ``dagster_home/dagster.yaml`` limits every pool to one
  step at a time, so one training (or evaluation) runs at once across all runs.
- ``GPU_STEP_TAGS``: the pod a training/evaluation step gets under ``k8s_job_executor``
  (``kala_assets.definitions_k8s``): one NVIDIA GPU, memory and CPU to match, a GPU node, and the
  shared data volume. In-process runs ignore these tags.
"""

GPU_POOL = "gpu"
DATA_VOLUME = "kala-data"  # a ReadWriteMany PVC (or a CSI-mounted bucket) at KALA_DATA_DIR
DATA_MOUNT = "/data"

GPU_STEP_K8S_CONFIG = {
    "container_config": {
        "resources": {
            "requests": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "1"},
            "limits": {"cpu": "16", "memory": "96Gi", "nvidia.com/gpu": "1"},
        },
        "env": [{"name": "KALA_DATA_DIR", "value": DATA_MOUNT}],
        "volume_mounts": [{"name": DATA_VOLUME, "mount_path": DATA_MOUNT}],
    },
    "pod_spec_config": {
        "node_selector": {"nvidia.com/gpu.present": "true"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "volumes": [{"name": DATA_VOLUME, "persistent_volume_claim": {"claim_name": DATA_VOLUME}}],
    },
}
GPU_STEP_TAGS = {"dagster-k8s/config": GPU_STEP_K8S_CONFIG, "kala/resources": "gpu"}
