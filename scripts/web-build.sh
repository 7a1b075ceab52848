#!/usr/bin/env bash
# Builds the web example (examples/web) into a folder any static file server can serve:
# the wasm and its JS glue (wasm-bindgen --target web), index.html, and the tiny Llama
# fixture files the page fetches.
#
#   scripts/web-build.sh [DIR]      (default target/web)
#
# Needs the wasm32-unknown-unknown target (rustup target add wasm32-unknown-unknown) and
# wasm-bindgen-cli at the version of the wasm-bindgen crate in Cargo.lock
# (cargo install wasm-bindgen-cli --version X).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/web}"
target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --locked --release --example web --target wasm32-unknown-unknown \
    --no-default-features --features webgpu,safetensors,tokenizer,reference
mkdir -p "$out/tiny-llama"
wasm-bindgen --target web --no-typescript --out-dir "$out" \
    "$target_dir/wasm32-unknown-unknown/release/examples/web.wasm"
cp examples/web/index.html "$out/"
for f in config.json model.safetensors tokenizer.json tokenizer_config.json generation_config.json; do
    cp "tests/fixtures/models/tiny-llama/$f" "$out/tiny-llama/"
done
echo "built $out: $(du -h "$out/web_bg.wasm" | cut -f1) of wasm"
