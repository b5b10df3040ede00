#!/usr/bin/env bash
# Build the bundled plugins from source and install them into a plugin
# folder (default plugins/dist) by the atomic-rename workflow.
# Usage: scripts/build-plugins.sh [DEST]
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-plugins/dist}"
bundled=(clock calculator echo video rooms sysmon)

rustup target add wasm32-wasip2 >/dev/null
args=()
for p in "${bundled[@]}"; do args+=(-p "$p"); done
CARGO_TARGET_DIR=target/guests cargo build --release --target wasm32-wasip2 "${args[@]}"

mkdir -p "$dest"
for p in "${bundled[@]}"; do
    cp "target/guests/wasm32-wasip2/release/$p.wasm" "$dest/.$p.wasm.tmp"
    mv "$dest/.$p.wasm.tmp" "$dest/$p.wasm"
done
echo "plugins installed in $dest: ${bundled[*]}"
