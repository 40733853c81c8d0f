#!/usr/bin/env bash
# The main job: materialize the whole KALA asset graph (with its checks) on the embedded defaults.
# Extra arguments go to `dagster asset materialize`, e.g. --select 'constitutional_examples+'.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
set -a; . ./.env; set +a
if [ -z "${KALA_BENCHMARK_MIRROR:-}" ] && [ -d ../shared/benchmarks ]; then
    KALA_BENCHMARK_MIRROR=$(cd ../shared/benchmarks && pwd)
    export KALA_BENCHMARK_MIRROR
fi
select='*'
if [ "${1:-}" = "--select" ]; then select=$2; shift 2; fi
exec .venv/bin/dagster asset materialize -m kala_assets --select "$select" -c configs/cpu_default.yaml "$@"
