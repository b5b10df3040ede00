#!/usr/bin/env bash
# Install what the tests need, then run the whole suite: the host's unit
# tests, and end-to-end tests against a real host on loopback with plugins
# built from source (the test kit builds them into target/guests).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2
cargo test --release "$@"
