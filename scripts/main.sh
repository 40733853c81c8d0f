#!/usr/bin/env bash
# The main job: materialize the whole KALA asset graph (with its checks) on the embedded defaults.
# Extra arguments go to `dagster asset materialize`, e.g. --select 'constitutional_examples+'.
# Exit status: 0 = every step ran (and, for the whole graph, the gate passed and the model was promoted);
# 3 = every step ran but the ethics gate blocked promotion (the verdict above says why);
# anything else = a failure (Dagster's own status), with the error in the log.
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
started=$(date +%s)
status=0
.venv/bin/dagster asset materialize -m kala_assets --select "$select" -c configs/cpu_default.yaml "$@" || status=$?
verdict=0
echo
.venv/bin/python -m kala_lib.gate_report --since "$started" || verdict=$?
if [ "$verdict" -eq 3 ]; then exit 3; fi          # the gate blocked: a verdict, not a crash
if [ "$status" -ne 0 ]; then exit "$status"; fi    # a failure before or beside the gate
exit 0
