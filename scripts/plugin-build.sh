#!/usr/bin/env bash
# `switchyard plugin build PROJECT`, then move the component to OUT.wasm.
# Usage: scripts/plugin-build.sh PROJECT OUT.wasm
# Uses `$SWITCHYARD` when set (the test kit points it at the binary under
# test), else builds and runs the host with cargo.
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 PROJECT OUT.wasm" >&2; exit 64; }
root=$(cd "$(dirname "$0")/.." && pwd)
project=$1
out=$(realpath -m -- "$2")
if [ -n "${SWITCHYARD:-}" ]; then
    switchyard=("$SWITCHYARD")
else
    switchyard=(cargo run --quiet --release --manifest-path "$root/Cargo.toml" -p switchyard-cli --bin switchyard --)
fi
mkdir -p "$(dirname "$out")"
staging=$(mktemp -d "$(dirname "$out")/.build.XXXXXX")
trap 'rm -rf "$staging"' EXIT
# `plugin build` says where it put the component: "built PATH".
built=$("${switchyard[@]}" plugin build "$project" --out "$staging" | sed -n 's/^built //p')
mv "$built" "$out"
echo "built $out ($(stat -c %s "$out") bytes)" >&2
