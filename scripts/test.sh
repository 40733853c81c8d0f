#!/usr/bin/env bash
# Set up the environment and run the test suite. Extra arguments go to pytest (e.g. -m 'not slow').
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
. scripts/phase.sh
phase "chromium (the browser test)" ./scripts/install_browser.sh
exec .venv/bin/python -m pytest "$@"
