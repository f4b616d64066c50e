#!/usr/bin/env bash
# What one router call costs in wasmtime itself, without the host around it (BENCHMARKS.md,
# "A router in the path"): the same routing logic behind the full `user-message` record the
# router world passes today, and behind a lean record of the five fields routers read; the
# lean one both through `call_async` (as the host calls plugins) and a plain `call`.
#
# A separate pair of crates (not workspace members), built into target/lean-router-call:
# the first run compiles wasmtime again (~6 min on 2 cores). Run from anywhere:
#   bash host/benches/experiments/lean-router-call/run.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export CARGO_TARGET_DIR="$here/../../../../target/lean-router-call"
rustup target add wasm32-wasip2 >/dev/null 2>&1 || true
cargo build --quiet --release --target wasm32-wasip2 --manifest-path "$here/guest/Cargo.toml"
cargo build --quiet --release --manifest-path "$here/host/Cargo.toml"
"$CARGO_TARGET_DIR/release/lean-host" "$CARGO_TARGET_DIR/wasm32-wasip2/release/lean_guest.wasm"
