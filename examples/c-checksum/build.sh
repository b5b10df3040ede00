#!/usr/bin/env bash
# Build the C `checksum` plugin into a Switchyard component.
# Usage: examples/c-checksum/build.sh OUT.wasm
#
# Toolchain: clang, wasm-ld, wasi-libc and the wasm32 compiler-rt builtins from
# Debian packages (apt-get, needs root or sudo). Everything else is in the
# `switchyard` binary (`$SWITCHYARD`, else built with cargo): `plugin build`
# writes the C bindings into build/, runs clang, and encodes the component.
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUT.wasm" >&2; exit 64; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(realpath -m -- "$1")

pkgs=(clang lld wasi-libc libclang-rt-dev-wasm32)
if [ "$(dpkg-query -W -f='${db:Status-Status}\n' "${pkgs[@]}" 2>/dev/null | grep -c '^installed$')" -ne ${#pkgs[@]} ]; then
    echo "installing ${pkgs[*]} with apt-get" >&2
    sudo=; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2
fi

"$root/scripts/plugin-build.sh" "$here" "$out"
