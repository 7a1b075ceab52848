#!/usr/bin/env bash
# Builds the web example (examples/web) into a folder any static file server can serve:
# the wasm and its JS glue (wasm-bindgen --target web), index.html, and the tiny Llama
# fixture files the page fetches.
#
#   scripts/web-build.sh [DIR] [--checks-only]      (default DIR: target/web)
#
# --checks-only builds the page without the model (features webgpu,reference: no
# safetensors or tokenizer code in it): verify's three checks alone.
#
# Needs the wasm32-unknown-unknown target (rustup target add wasm32-unknown-unknown) and
# wasm-bindgen-cli at the version of the wasm-bindgen crate in Cargo.lock
# (cargo install wasm-bindgen-cli --version X). With binaryen's wasm-opt on the PATH
# (Debian: binaryen) the wasm is optimized for size (-Oz); without it, it is left as
# rustc's release build made it.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/web
features=webgpu,safetensors,tokenizer,reference
model=yes
for arg in "$@"; do
    case "$arg" in
        --checks-only) features=webgpu,reference model=no ;;
        -*) echo "web-build: unknown option $arg" >&2; exit 2 ;;
        *) out="$arg" ;;
    esac
done
target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --locked --release --example web --target wasm32-unknown-unknown \
    --no-default-features --features "$features"
wasm="$target_dir/wasm32-unknown-unknown/release/examples/web.wasm"
if command -v wasm-opt >/dev/null; then
    # Before wasm-bindgen: Debian's binaryen (108) breaks the externref table that
    # wasm-bindgen adds. The features are those rustc's wasm32-unknown-unknown target uses.
    wasm-opt -Oz --enable-bulk-memory --enable-multivalue --enable-mutable-globals \
        --enable-nontrapping-float-to-int --enable-reference-types --enable-sign-ext \
        "$wasm" -o "$target_dir/web-opt.wasm"
    wasm="$target_dir/web-opt.wasm"
    optimized="wasm-opt -Oz"
else
    optimized="not optimized: no wasm-opt"
fi
mkdir -p "$out"
wasm-bindgen --target web --no-typescript --out-name web --out-dir "$out" "$wasm"
cp examples/web/index.html "$out/"
if [ "$model" = yes ]; then
    mkdir -p "$out/tiny-llama"
    for f in config.json model.safetensors tokenizer.json tokenizer_config.json \
        generation_config.json; do
        cp "tests/fixtures/models/tiny-llama/$f" "$out/tiny-llama/"
    done
fi
echo "built $out ($features): $(stat -c %s "$out/web_bg.wasm") bytes of wasm ($optimized)"
