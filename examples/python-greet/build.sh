#!/usr/bin/env bash
# Build the Python `greet` plugin into a Switchyard component with componentize-py.
# Usage: examples/python-greet/build.sh OUT.wasm
# The toolchain (a venv with componentize-py) is cached in target/toolchains/.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUT.wasm" >&2; exit 64; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(realpath -m -- "$1")

version=0.25.1
venv="$root/target/toolchains/componentize-py-$version"
if [ ! -e "$venv/.complete" ]; then
    echo "installing componentize-py $version into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$version"
    touch "$venv/.complete"
fi

tmp="$out.tmp.$$"
src=$(mktemp -d)  # build from a copy so no __pycache__ lands in the source tree
trap 'rm -rf "$tmp" "$src"' EXIT
cp "$here/app.py" "$src/"
mkdir -p "$(dirname "$out")"
# Bindings (module `wit_world`, plus `componentize_py_types`) are generated
# from the WIT on the fly; `app` is the module holding the `Handler` class.
"$venv/bin/componentize-py" --quiet -d "$root/wit/v0.2.0" -w plugin \
    componentize -p "$src" -o "$tmp" app
mv "$tmp" "$out"
echo "built $out ($(stat -c %s "$out") bytes)" >&2
