#!/usr/bin/env bash
# Install the PyPI package NAME==VERSION into its own venv under
# target/toolchains/NAME-VERSION/ (once; later calls reuse it) and print the
# venv's path. The examples get componentize-py, Zig and Go this way.
# Usage: scripts/pip-toolchain.sh NAME VERSION
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 NAME VERSION" >&2; exit 64; }
root=$(cd "$(dirname "$0")/.." && pwd)
venv="$root/target/toolchains/$1-$2"
if [ ! -e "$venv/.complete" ]; then
    echo "installing $1 $2 into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$1==$2" >&2
    touch "$venv/.complete"
fi
echo "$venv"
