#!/usr/bin/env bash
# Debian's chromium for the browser test (tests/test_ui.py, marker "ui"), installed when missing and
# this is a root shell with apt-get (as in CI). Elsewhere it says what to do; Playwright's own
# browser download is not used (no network beyond the package registries).
set -euo pipefail
if [ -n "${KALA_CHROMIUM:-}" ] || [ -x /usr/lib/chromium/chromium ] || command -v chromium >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's chromium for the browser test" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
    echo "setup: chromium is missing, so the browser test will fail: install it (sudo apt-get install chromium)," \
         "set KALA_CHROMIUM to a chromium binary, or deselect the test with -m 'not ui'" >&2
fi
