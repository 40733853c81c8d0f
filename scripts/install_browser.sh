#!/usr/bin/env bash
# Debian's chromium for the browser test (tests/test_ui.py, marker "ui"), installed when missing
# (scripts/install_debian_package.sh). Playwright's own browser download is not used (no network
# beyond the package registries).
set -euo pipefail
if [ -n "${KALA_CHROMIUM:-}" ] || [ -x /usr/lib/chromium/chromium ] || command -v chromium >/dev/null 2>&1; then
    exit 0
fi
exec "$(dirname "$0")/install_debian_package.sh" chromium "for the browser test" \
    "set KALA_CHROMIUM to a chromium binary, or deselect the test with -m 'not ui'"
