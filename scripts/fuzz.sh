#!/usr/bin/env bash
# Fuzz the host's parsers with cargo-fuzz (libFuzzer, coverage-guided):
# the dialect decoder, the /api/control translation, the worker protocol,
# the config loader and the MessagePack reader (tests/fuzz/). Each target runs SECONDS (default 60);
# a crash stops the script and leaves its input under
# tests/fuzz/artifacts/TARGET/ (reproduce: cargo +nightly fuzz run
# --fuzz-dir tests/fuzz TARGET ARTIFACT).
#
#   scripts/fuzz.sh                 # every target, 60 s each
#   scripts/fuzz.sh 600 dialect     # one target, 10 minutes
#
# Needs a nightly toolchain and cargo-fuzz (installed on first use):
#   rustup toolchain install nightly --profile minimal && cargo install cargo-fuzz
# The seed corpus is made from the examples in docs/protocol.md and the
# README each run; the corpora grow under target/fuzz-corpus/ and are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(dialect control worker config msgpack)

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked

corpus=target/fuzz-corpus
mkdir -p "$corpus"/{dialect,control,worker,config,msgpack}
seed() { # seed TARGET NAME < text
    cat > "$corpus/$1/seed-$2"
}
# Every line of every ```json block in the protocol doc: messages, replies,
# events, worker frames (multi-line blocks give partial lines, also useful).
n=0
while IFS= read -r line; do
    n=$((n + 1))
    printf '%s' "$line" | seed dialect "doc-$n"
    printf '%s' "$line" | seed worker "doc-$n"
done < <(awk '/^```json/{on=1; next} /^```/{on=0} on' docs/protocol.md)
# /api/control: a method byte (0 GET, 1 POST, 2 PUT, 3 DELETE), the query,
# 0xFF, the body.
# MessagePack: a canonical message, a request-form one, nesting and bin.
printf '\x83\xa4type\xa4echo\xa2id\x01\xa4data\x81\xa7message\xa2hi' | seed msgpack canonical
printf '\x83\xa4type\xa7request\xa6msg_id\xa2m1\xa4data\x81\xa6action\xa8get_time' | seed msgpack request
printf '\x81\xa1b\xc4\x02\x00\xff' | seed msgpack bin
printf '\x91\x91\x91\x92\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00\xc0' | seed msgpack nested
printf '\x01\xff{"action":"play","video_path":"/videos/example.mp4"}' | seed control play
printf '\x00action=seek&position=12.5\xff' | seed control query
printf '\x03\xff' | seed control stop
printf '\x02video_path=/a.mp4\xff{"action":"pause"}' | seed control mixed
# The configuration: the README's example and a small one.
awk '/^```toml/{on=1; next} /^```/{on=0} on' README.md | seed config readme
printf 'listen = "127.0.0.1:0"\n[plugins]\ndeadline_ms = 500\n[plugins.breaker.echo]\nfailures = 2\n[[endpoints]]\npath = "/feed"\nsubscribe = ["alert.*"]\n' | seed config small

for target in "${targets[@]}"; do
    echo "== $target: $seconds s"
    # No sanitizer: the parsers are safe Rust; libFuzzer still catches
    # panics (failed asserts, overflow with debug assertions), aborts and
    # timeouts, and runs several times faster than under ASan.
    cargo +nightly fuzz run --fuzz-dir tests/fuzz --sanitizer none "$target" "$corpus/$target" -- \
        -max_total_time="$seconds" -timeout=5 -rss_limit_mb=2048 -print_final_stats=1
done
