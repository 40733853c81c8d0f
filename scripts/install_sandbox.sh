#!/usr/bin/env bash
# Debian's bubblewrap, the sandbox that every generated program runs in (kala_lib/sandbox.py),
# installed when missing (scripts/install_debian_package.sh). Without it evaluation refuses to run
# generated code unless KALA_ALLOW_UNSANDBOXED_CODE=1.
set -euo pipefail
command -v bwrap >/dev/null 2>&1 && exit 0
exec "$(dirname "$0")/install_debian_package.sh" bubblewrap "the sandbox for generated code" \
    "set KALA_ALLOW_UNSANDBOXED_CODE=1 to run generated code without it"
