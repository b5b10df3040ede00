#!/usr/bin/env bash
# Build the Zig `sum` plugin into a Switchyard component.
# Usage: examples/zig-sum/build.sh OUT.wasm
#
# Zig comes from PyPI (package `ziglang`, in a venv cached in target/toolchains/);
# its bundled LLD is the wasm linker. The Rust toolchain's `wasm-component-ld`
# links the core module and turns it into a component of the WIT world.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUT.wasm" >&2; exit 64; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(realpath -m -- "$1")

version=0.15.2
venv="$root/target/toolchains/ziglang-$version"
if [ ! -e "$venv/.complete" ]; then
    echo "installing ziglang $version into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "ziglang==$version"
    # wasm-component-ld runs `wasm-ld` itself: point it at Zig's.
    printf '#!/bin/sh\nexec "%s" -m ziglang wasm-ld "$@"\n' "$venv/bin/python" > "$venv/bin/wasm-ld"
    chmod +x "$venv/bin/wasm-ld"
    touch "$venv/.complete"
fi
zig=("$venv/bin/python" -m ziglang)

component_ld="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/wasm-component-ld"
[ -x "$component_ld" ] || { echo "no wasm-component-ld at $component_ld" >&2; exit 1; }

build=$(mktemp -d)
tmp="$out.tmp.$$"
trap 'rm -rf "$build" "$tmp"' EXIT
# A static library rather than an object, so that compiler-rt comes along.
"${zig[@]}" build-lib -target wasm32-freestanding -O ReleaseSmall -fcompiler-rt \
    --cache-dir "$build/cache" --global-cache-dir "$venv/zig-cache" \
    "$here/sum.zig" -femit-bin="$build/libsum.a"
exports=()
for name in "switchyard:plugin/handler@0.1.0#manifest" "switchyard:plugin/handler@0.1.0#handle" \
    "cabi_post_switchyard:plugin/handler@0.1.0#manifest" "cabi_post_switchyard:plugin/handler@0.1.0#handle" \
    cabi_realloc; do
    exports+=("--export=$name")
done
mkdir -p "$(dirname "$out")"
# --component-type: the WIT world to type the component with (no bindings object needed).
"$component_ld" --wasm-ld-path "$venv/bin/wasm-ld" --no-entry "${exports[@]}" "$build/libsum.a" \
    --component-type "$root/wit/v0.1.0/plugin.wit" --wasi-adapter none -o "$tmp"
mv "$tmp" "$out"
echo "built $out ($(stat -c %s "$out") bytes)" >&2
