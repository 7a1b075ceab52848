#!/usr/bin/env bash
# The GPU check in one command: the test suite against a real GPU adapter, `verify` at tp 1,
# 2, 4 and 8, and the bench's GPU lines (GEMM GFLOP/s, the decode shapes against the
# memory floor, a model's decode step), written to one summary, within 8 minutes.
#
#   scripts/gpu-check.sh build [DIR]   here (a Rust toolchain): builds the release examples
#                                      and the test binaries into DIR (default .gpu, which
#                                      .gitignore names)
#   scripts/gpu-check.sh run [DIR]     there (no toolchain needed; here too, on lavapipe):
#                                      runs them from DIR and writes DIR/summary.txt (and
#                                      $OUT/summary.txt when OUT is set)
#
# On a machine lent through the device tool: build here, then run with `carry` naming DIR
# (and .gl, the Vulkan/EGL loaders as its README says, when that machine lacks them).
# Without a real GPU the run still goes end to end on the best adapter there is, and the
# summary marks the lines whose figures only mean something on a GPU.
set -uo pipefail
cd "$(dirname "$0")/.."

mode=${1:-}
dir=${2:-.gpu}

if [ "$mode" = build ]; then
    set -e
    rm -rf "$dir"
    mkdir -p "$dir/tests"
    cargo build --release --locked --examples
    for e in verify bench generate; do cp "target/release/examples/$e" "$dir/"; done
    # The test binaries (dev profile, as `cargo test` builds them) and where they look for
    # their fixtures (CARGO_MANIFEST_DIR, compiled in).
    cargo test --locked --no-run --message-format=json 2>/dev/null |
        python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["executable"])
' | while read -r exe; do cp "$exe" "$dir/tests/"; done
    pwd >"$dir/manifest_dir"
    # Stripped and in one solid archive (the binaries share most of their code, so a
    # dictionary that spans them packs 30-odd 8 MB binaries into a few MB): what a device
    # machine is sent is bounded (64 MiB).
    strip "$dir"/verify "$dir"/bench "$dir"/generate "$dir"/tests/*
    tar -C "$dir" -cf - verify bench generate tests |
        xz -9 --lzma2=preset=9,dict=256MiB -T1 >"$dir/bundle.tar.xz"
    rm -rf "$dir/tests" "$dir/verify" "$dir/bench" "$dir/generate"
    echo "built into $dir: $(du -h "$dir/bundle.tar.xz" | cut -f1) (verify, bench, generate, the test binaries)"
    exit 0
fi

if [ "$mode" != run ]; then
    echo "usage: scripts/gpu-check.sh build|run [DIR]" >&2
    exit 2
fi

start=$(date +%s)
if [ ! -x "$dir/verify" ]; then
    tar -C "$dir" -xJf "$dir/bundle.tar.xz" || { echo "no $dir/bundle.tar.xz: run '$0 build' first" >&2; exit 2; }
fi
summary="$dir/summary.txt"
log="$dir/log.txt"
: >"$log"
say() { printf '%s\n' "$*" | tee -a "$summary"; }
elapsed() { echo $(($(date +%s) - start)); }
: >"$summary"

# Loaders carried as .deb files (the device README's recipe), and NVIDIA's ICD.
if ! ldconfig -p 2>/dev/null | grep -q libvulkan && ls .gl/*.deb >/dev/null 2>&1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
if [ -e /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
fi
export NODEVICE_SELECT=1 CI=true
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/wgpu-tp-xdg-$(id -u)}"
mkdir -p -m 700 "$XDG_RUNTIME_DIR"
# The test binaries read their fixtures where they were built.
built=$(cat "$dir/manifest_dir" 2>/dev/null || echo "$PWD")
if [ ! -e "$built" ]; then
    mkdir -p "$(dirname "$built")" && ln -s "$PWD" "$built"
fi

say "== wgpu-tp GPU check, $(date -u +%Y-%m-%dT%H:%MZ)"
command -v nvidia-smi >/dev/null && say "nvidia-smi: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null)"
"$dir/verify" --list-adapters >>"$log" 2>&1
# The first adapter that is not a CPU one (its name and backend), else the first.
line=$("$dir/verify" --list-adapters 2>/dev/null | grep -E '^ +[0-9]+: ' | grep -v ', Cpu)' | head -1)
gpu=yes
if [ -z "$line" ]; then
    line=$("$dir/verify" --list-adapters 2>/dev/null | grep -E '^ +[0-9]+: ' | head -1)
    gpu=no
fi
name=$(sed -E 's/^ +[0-9]+: (.*) \(([A-Za-z0-9]+), [A-Za-z]+\), driver.*/\1/' <<<"$line")
backend=$(sed -E 's/^ +[0-9]+: (.*) \(([A-Za-z0-9]+), [A-Za-z]+\), driver.*/\2/' <<<"$line" | tr 'A-Z' 'a-z')
if [ -z "$name" ]; then
    say "no adapter found: see $log"
    exit 1
fi
export WGPU_ADAPTER_NAME="$name" WGPU_BACKEND="$backend"
say "adapter: $line"
[ "$gpu" = no ] && say "NO GPU: the lines marked (needs a GPU) below are this CPU adapter's figures"
mark() { [ "$gpu" = yes ] && echo "" || echo " (needs a GPU)"; }

# The test suite on that adapter, each binary in turn, within 4 minutes in all.
pass=0 fail=0 skipped=0
failed=""
for t in "$dir"/tests/*; do
    left=$((240 - $(elapsed)))
    if [ "$left" -le 5 ]; then
        skipped=$((skipped + 1))
        continue
    fi
    if timeout "$left" "$t" >>"$log" 2>&1; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        failed="$failed $(basename "$t" | sed -E 's/-[0-9a-f]{16}$//')"
    fi
done
say "tests: $pass binaries passed, $fail failed${failed:+ ($failed)}, $skipped not run (the 4-minute budget)"

# verify at tp 1, 2, 4, 8: devices on the adapter.
for tp in 1 2 4 8; do
    if timeout 60 "$dir/verify" --tp-size "$tp" --ranks one-adapter >>"$log" 2>&1; then
        say "verify --tp-size $tp: PASS"
    else
        say "verify --tp-size $tp: FAIL (see $log)"
    fi
done

# The bench's GPU lines, in what is left of the 8 minutes.
left=$((470 - $(elapsed)))
if [ "$left" -gt 30 ]; then
    timeout "$left" "$dir/bench" --only gemm,decode,train,model,model1b,quant --sizes 1024,2048,4096 --reps 5 \
        --plot "$dir/gemm.svg" >"$dir/bench.txt" 2>&1
    rc=$?
    cat "$dir/bench.txt" >>"$log"
    say "bench (exit $rc):"
    grep -E 'GF/s|^ +[0-9]+ +[A-Za-z]+ +[0-9.]+|copy of 64|x the copy|MLP 1024|decode step|bf16 \[out, in\]|products alone|^[a-z0-9_]+: [0-9.]+$' "$dir/bench.txt" |
        sed "s/\$/$(mark)/" | tee -a "$summary"
    say "  compare the WGSL GFLOP/s with the adapter's f32 peak (an H100/H200 SXM: about 67,000)"
else
    say "bench: not run (no time left of the 8 minutes)"
fi
say "took $(elapsed) s"
if [ -n "${OUT:-}" ]; then
    cp "$summary" "$log" "$OUT/" 2>/dev/null
fi
[ "$fail" -eq 0 ]
