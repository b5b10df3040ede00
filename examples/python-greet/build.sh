#!/usr/bin/env bash
# Build the Python `greet` plugin into a Switchyard component with componentize-py.
# Usage: examples/python-greet/build.sh OUT.wasm [SOURCE_DIR]
# SOURCE_DIR holds the app.py to build (default: this folder; the test kit
# builds its Python fixtures with it).
# The toolchain (a venv with componentize-py) is cached in target/toolchains/.
set -euo pipefail
[ $# -eq 1 ] || [ $# -eq 2 ] || { echo "usage: $0 OUT.wasm [SOURCE_DIR]" >&2; exit 64; }
here=$(cd "$(dirname "$0")" && pwd)
app_dir=$(cd "${2:-$here}" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(realpath -m -- "$1")

venv=$("$root/scripts/pip-toolchain.sh" componentize-py 0.25.1)

tmp="$out.tmp.$$"
src=$(mktemp -d)  # build from a copy so no __pycache__ lands in the source tree
trap 'rm -rf "$tmp" "$src"' EXIT
cp "$app_dir/app.py" "$src/"
mkdir -p "$(dirname "$out")"
# Bindings (module `wit_world`, plus `componentize_py_types`) are generated
# from the WIT on the fly; `app` is the module holding the `Handler` class.
"$venv/bin/componentize-py" --quiet -d "$root/wit/v0.2.0" -w plugin \
    componentize -p "$src" -o "$tmp" app
mv "$tmp" "$out"
echo "built $out ($(stat -c %s "$out") bytes)" >&2
