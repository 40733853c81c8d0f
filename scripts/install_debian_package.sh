#!/usr/bin/env bash
# Install a Debian package that a check found missing, when this is a root shell with apt-get (as in
# CI); elsewhere say what to do. Usage: install_debian_package.sh PACKAGE PURPOSE OTHERWISE
#   PURPOSE: what it is for ("the sandbox for generated code"); OTHERWISE: the alternative to installing it
set -euo pipefail
package=$1 purpose=$2 otherwise=$3
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's $package, $purpose" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
else
    echo "setup: $package ($purpose) is missing: install it (sudo apt-get install $package), or $otherwise" >&2
fi
