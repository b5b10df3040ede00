#!/usr/bin/env bash
# Build the host and the bundled plugins, then serve on 127.0.0.1:8080.
# Extra arguments go to `switchyard serve` (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build-plugins.sh plugins/dist
exec cargo run --release -p switchyard-cli -- serve --plugins plugins/dist "$@"
