#!/usr/bin/env bash
# Build the C `checksum` plugin into a Switchyard component.
# Usage: examples/c-checksum/build.sh OUT.wasm
#
# Toolchain: clang, wasm-ld, wasi-libc and the wasm32 compiler-rt builtins from
# Debian packages (apt-get, needs root or sudo); `wit-bindgen` (C bindings)
# from crates.io, cached in target/toolchains/; and the Rust toolchain's own
# `wasm-component-ld`, which links the core module and turns it into a component.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUT.wasm" >&2; exit 64; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(realpath -m -- "$1")

# 1. Debian packages.
pkgs=(clang lld wasi-libc libclang-rt-dev-wasm32)
if [ "$(dpkg-query -W -f='${db:Status-Status}\n' "${pkgs[@]}" 2>/dev/null | grep -c '^installed$')" -ne ${#pkgs[@]} ]; then
    echo "installing ${pkgs[*]} with apt-get" >&2
    sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
fi

# 2. wit-bindgen, C generator only (a few minutes to compile, once).
wit_bindgen_version=0.63.0
wit_bindgen="$root/target/toolchains/wit-bindgen-cli-$wit_bindgen_version/bin/wit-bindgen"
if [ ! -x "$wit_bindgen" ]; then
    echo "installing wit-bindgen-cli $wit_bindgen_version into target/toolchains/" >&2
    env -u CARGO_TARGET_DIR cargo install --quiet --locked --no-default-features --features c \
        --root "$root/target/toolchains/wit-bindgen-cli-$wit_bindgen_version" "wit-bindgen-cli@$wit_bindgen_version"
fi

# 3. wasm-component-ld ships with rustc (Rust >= 1.82).
component_ld="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/wasm-component-ld"
[ -x "$component_ld" ] || { echo "no wasm-component-ld at $component_ld" >&2; exit 1; }

# 4. Generate the bindings and build.
build=$(mktemp -d)
tmp="$out.tmp.$$"
trap 'rm -rf "$build" "$tmp"' EXIT
"$wit_bindgen" c "$root/wit/v0.1.0" --world plugin --out-dir "$build" >&2
mkdir -p "$(dirname "$out")"
# plugin_component_type.o carries the WIT types; wasm-component-ld reads it
# and wraps the wasip1 reactor module into a component with its reactor adapter.
clang --target=wasm32-wasi -mexec-model=reactor -O2 -Wall -Wextra -I "$build" \
    -fuse-ld="$component_ld" -Wl,--wasm-ld-path="$(command -v wasm-ld)" -Wl,--wasi-adapter=reactor \
    "$here/checksum.c" "$here/json.c" "$build/plugin.c" "$build/plugin_component_type.o" \
    -o "$tmp"
mv "$tmp" "$out"
echo "built $out ($(stat -c %s "$out") bytes)" >&2
