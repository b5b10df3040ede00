#!/usr/bin/env bash
# Build the JavaScript `text.*` plugin into a Switchyard component with jco
# (QuickJS backend). Usage: examples/js-text/build.sh OUT.wasm
# The toolchain (jco, pinned by toolchain/package-lock.json) is installed into
# target/toolchains/jco-<hash of toolchain/>/ and reused from there.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUT.wasm" >&2; exit 64; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(realpath -m -- "$1")

key=$(cat "$here/toolchain/package.json" "$here/toolchain/package-lock.json" | sha256sum | cut -c1-12)
prefix="$root/target/toolchains/jco-$key"
if [ ! -e "$prefix/.complete" ]; then
    echo "installing jco into $prefix" >&2
    rm -rf "$prefix"
    mkdir -p "$prefix"
    cp "$here/toolchain/package.json" "$here/toolchain/package-lock.json" "$prefix/"
    # `npm install` rather than `npm ci`: npm leaves some other platforms'
    # optional native bindings out of the lock, which `npm ci` rejects.
    npm install --prefix "$prefix" --no-audit --no-fund --loglevel=error
    touch "$prefix/.complete"
fi

tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
mkdir -p "$(dirname "$out")"
# Absolute paths: jco 1.35 resolves a relative entry file against its own folder.
# --backend quickjs: the default StarlingMonkey backend cannot read the WIT folder.
# --backend-qjs-disable-async: the default QuickJS runtime uses component-model
# async builtins (`task.cancel`), which the Switchyard host does not enable.
"$prefix/node_modules/.bin/jco" componentize "$here/app.js" \
    --wit "$root/wit/v0.2.0" --world-name plugin \
    --backend quickjs --backend-qjs-disable-async \
    -o "$tmp" >&2
mv "$tmp" "$out"
echo "built $out ($(stat -c %s "$out") bytes)" >&2
