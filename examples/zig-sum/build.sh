#!/usr/bin/env bash
# Build the Zig `sum` plugin into a Switchyard component.
# Usage: examples/zig-sum/build.sh OUT.wasm
#
# Zig comes from PyPI (package `ziglang`, in a venv cached in target/toolchains/).
# `switchyard plugin build` writes the C bindings into build/, runs
# `zig build-exe` for a wasm32-wasi reactor, and encodes the component.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUT.wasm" >&2; exit 64; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(realpath -m -- "$1")

venv=$("$root/scripts/pip-toolchain.sh" ziglang 0.15.2)
# A `zig` command (the package runs as `python -m ziglang`).
if [ ! -x "$venv/bin/zig" ]; then
    printf '#!/bin/sh\nexec "%s" -m ziglang "$@"\n' "$venv/bin/python" > "$venv/bin/zig"
    chmod +x "$venv/bin/zig"
fi

SWITCHYARD_ZIG="$venv/bin/zig" "$root/scripts/plugin-build.sh" "$here" "$out"
