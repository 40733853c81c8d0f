"""The one ``Definitions`` object: assets, checks, jobs, sensors and resources of the KALA graph.

Steps run in one process (``in_process_executor``): the data steps take seconds, so process
start-up would dominate, and a single process never contends for the DuckDB file lock.
``kala_assets.definitions_k8s`` is the same graph with a pod per step on Kubernetes.
"""

import dagster as dg

from kala_assets.assets import benchmarks, constitutional, evaluation, incoming, mix, safety_sources, training
from kala_assets.checks import CHECKS
from kala_assets.jobs import JOBS
from kala_assets.resources import kala_resources
from kala_assets.sensors import SENSORS

ASSETS = dg.load_assets_from_modules([constitutional, incoming, benchmarks, safety_sources, mix, training, evaluation])
RESOURCES = kala_resources()

defs = dg.Definitions(assets=ASSETS, asset_checks=CHECKS, resources=RESOURCES, jobs=JOBS, sensors=SENSORS,
                      executor=dg.in_process_executor)
